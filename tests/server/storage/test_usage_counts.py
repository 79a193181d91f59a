"""Usage per API key, on both backends: the store's counts (upserts that lose nothing, buckets,
grouping, filters, ownership) and the recorder that batches them (flushes, a store that fails
for a while, a reopened store, monthly budgets)."""

from __future__ import annotations

import asyncio
import calendar
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from reference_server.errors import QuotaExceeded
from reference_server.storage import DataLayout, Store
from reference_server.storage.records import UsageCell, UsageCounts
from reference_server.storage.service import StorageService
from reference_server.storage.usage import UsageRecorder, month_bounds

DAY = 86400
# 2026-12-30 10:00 UTC: the month ends two days later, and so does the year.
NOW = calendar.timegm((2026, 12, 30, 10, 0, 0))


def cell(owner: str = "alice", at: int = NOW, model: str = "m", kind: str = "completions") -> UsageCell:
    return UsageCell(owner=owner, minute=at // 60 * 60, model=model, kind=kind)


def test_counts_add_up_per_bucket_model_and_kind(where: Path | str) -> None:
    store = Store(where)
    try:
        store.add_usage([(cell(), UsageCounts(requests=1, prompt_tokens=10, completion_tokens=5)),
                         (cell(model="e", kind="embeddings"), UsageCounts(requests=1, prompt_tokens=7, inputs=3))])
        store.add_usage([(cell(at=NOW + 60), UsageCounts(requests=2, prompt_tokens=1, completion_tokens=1)),
                         (cell(at=NOW + DAY), UsageCounts(requests=1, trained_tokens=100)),
                         (cell(owner="bob", model="bobs-model"), UsageCounts(requests=9, prompt_tokens=9))])

        days = store.usage("alice", NOW - DAY, NOW + 2 * DAY, DAY)
        assert [(r.bucket, r.model, r.kind) for r in days] == [(NOW // DAY * DAY, None, None),
                                                              (NOW // DAY * DAY + DAY, None, None)]
        assert days[0].counts == UsageCounts(requests=4, prompt_tokens=18, completion_tokens=6, inputs=3)
        assert days[1].counts == UsageCounts(requests=1, trained_tokens=100)

        by_model = store.usage("alice", NOW, NOW + DAY, DAY, by_model=True, by_kind=True)
        assert [(r.model, r.kind, r.counts.requests) for r in by_model] == [("e", "embeddings", 1),
                                                                            ("m", "completions", 3)]
        only = store.usage("alice", NOW, NOW + DAY, 60, models=["m"], kinds=["completions"])
        assert [(r.bucket, r.counts.requests) for r in only] == [(NOW, 1), (NOW + 60, 2)]
        # The end is exclusive; another key's rows never show.
        [hour] = store.usage("alice", NOW, NOW + 60, 3600, models=["m"])
        assert (hour.bucket, hour.counts.requests) == (NOW, 1)
        assert store.usage("alice", NOW, NOW + DAY, DAY, models=["bobs-model"]) == []
        assert store.tokens_used(["alice", "bob", "carol"], NOW) == {"alice": 124, "bob": 9, "carol": 0}
        assert store.models_used("alice", ["m", "bobs-model", "never"]) == {"m"}
    finally:
        store.close()


def test_replicas_adding_to_the_same_cell_lose_no_count(where: Path | str) -> None:
    replicas, rounds = 4, 25
    stores = [Store(where) for _ in range(replicas)]
    start = threading.Barrier(replicas)

    def add(i: int) -> None:
        start.wait()
        for _ in range(rounds):
            stores[i].add_usage([(cell(), UsageCounts(requests=1, prompt_tokens=2))])

    try:
        with ThreadPoolExecutor(replicas) as pool:
            list(pool.map(add, range(replicas)))
        [row] = stores[0].usage("alice", NOW, NOW + 60, 60)
        assert row.counts == UsageCounts(requests=replicas * rounds, prompt_tokens=2 * replicas * rounds)
    finally:
        for store in stores:
            store.close()


def test_months_end_at_the_next_month_in_utc() -> None:
    assert month_bounds(NOW) == (calendar.timegm((2026, 12, 1, 0, 0, 0)), calendar.timegm((2027, 1, 1, 0, 0, 0)))
    assert month_bounds(calendar.timegm((2027, 2, 28, 23, 59, 59)))[1] == calendar.timegm((2027, 3, 1, 0, 0, 0))


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def _started(tmp_path: Path, where: Path | str, clock: Clock) -> tuple[StorageService, UsageRecorder]:
    storage = StorageService(DataLayout(tmp_path / "data"), where if isinstance(where, str) else None)
    await storage.start()
    recorder = UsageRecorder(storage, flush_seconds=0.05, clock=clock)
    await recorder.start()
    return storage, recorder


def test_the_recorder_writes_in_the_background_and_survives_a_restart(tmp_path: Path, where: Path | str) -> None:
    clock = Clock(NOW)

    async def first_life() -> None:
        storage, recorder = await _started(tmp_path, where, clock)
        for _ in range(10):
            recorder.record("alice", "m", "completions", prompt_tokens=3, completion_tokens=4)
        recorder.record("alice", "e", "embeddings", prompt_tokens=5, inputs=2)
        await asyncio.sleep(0.3)  # a few flush intervals, without asking for one
        [row] = await storage.db.usage("alice", NOW, NOW + DAY, DAY)
        assert row.counts == UsageCounts(requests=11, prompt_tokens=35, completion_tokens=40, inputs=2)
        recorder.record("alice", "m", "completions", prompt_tokens=1)
        await recorder.stop()  # the last counts are written on the way out
        await storage.stop()

    async def second_life() -> None:
        storage, recorder = await _started(tmp_path, where, clock)
        rows = await recorder.usage("alice", NOW, NOW + DAY, DAY, by_model=True)
        assert [(r.model, r.counts.requests, r.counts.prompt_tokens) for r in rows] == [("e", 1, 5), ("m", 11, 31)]
        assert await recorder.usage("bob", NOW, NOW + DAY, DAY) == []
        await recorder.stop()
        await storage.stop()

    asyncio.run(first_life())
    asyncio.run(second_life())


def test_counts_a_failed_write_kept_are_written_by_the_next(tmp_path: Path) -> None:
    async def run() -> None:
        storage, recorder = await _started(tmp_path, tmp_path, Clock(NOW))
        await recorder.stop()  # flushes by hand from here on
        recorder.record("alice", "m", "completions", prompt_tokens=3)
        real = storage.db
        storage._db = None  # the store is gone for a moment: writing raises
        with pytest.raises(RuntimeError):
            await recorder.flush()
        storage._db = real
        recorder.record("alice", "m", "completions", prompt_tokens=4)
        rows = await recorder.usage("alice", NOW, NOW + 60, 60)
        assert [(r.counts.requests, r.counts.prompt_tokens) for r in rows] == [(2, 7)]
        await storage.stop()

    asyncio.run(run())


def test_a_monthly_budget_is_refused_once_used_until_the_month_ends(tmp_path: Path, where: Path | str) -> None:
    clock = Clock(NOW)

    async def run() -> None:
        storage, recorder = await _started(tmp_path, where, clock)
        # Last month's use does not count against this month's budget.
        await storage.db.add_usage([(cell(at=NOW - 40 * DAY), UsageCounts(requests=1, prompt_tokens=10_000))])
        await recorder.check_quota("alice", 100)
        await recorder.check_quota("alice", None)
        recorder.record("alice", "m", "completions", prompt_tokens=60, completion_tokens=39)
        await recorder.check_quota("alice", 100)  # 99 used: one more request may start
        recorder.record("alice", "m", "completions", prompt_tokens=1)
        with pytest.raises(QuotaExceeded) as refused:
            await recorder.check_quota("alice", 100)
        assert refused.value.code == "quota_exceeded"
        assert refused.value.retry_after == 2 * DAY - 10 * 3600  # until 2027-01-01T00:00:00Z
        assert "2027-01-01T00:00:00Z" in refused.value.message
        await recorder.check_quota("bob", 100)  # budgets are per key
        await recorder.flush()
        with pytest.raises(QuotaExceeded):  # the same once written
            await recorder.check_quota("alice", 100)
        # Another replica's use counts after the next flush.
        await storage.db.add_usage([(cell(owner="bob"), UsageCounts(requests=1, prompt_tokens=500))])
        await recorder.flush()
        with pytest.raises(QuotaExceeded):
            await recorder.check_quota("bob", 100)
        clock.now = NOW + 2 * DAY  # a new month
        await recorder.check_quota("alice", 100)
        await recorder.stop()
        await storage.stop()

    asyncio.run(run())
