"""`UsageRecorder`: what each API key used, counted off the hot path and kept in the store.

Whatever serves a request calls `record(key, model, kind, **counts)` once its use is known (the
generation routes when an answer ends, however it ends; embeddings and classifications when they
answer; the fine-tuning service when a job succeeds). That only adds to a dict in memory, under a
lock held for a few microseconds, so counting costs the engines nothing. A background task writes
what was added to the store every `flush_seconds` (one transaction of upserts, one row per key,
minute, model and kind), so a crash loses at most the last interval's counts, and replicas sharing
a PostgreSQL store add to the same rows without losing any. A write that fails keeps its counts
in memory for the next try.

Monthly budgets: `check_quota(key, budget)` compares the tokens the key used this calendar month
(UTC), as the store held them at the last flush plus what waits to be written, with its budget,
and raises `QuotaExceeded` (saying when the month ends) once the budget is used up. The totals of
the keys it has seen are re-read after every flush, so use on other replicas counts too, about a
second late.
"""

from __future__ import annotations

import asyncio
import calendar
import contextlib
import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone

from maas_sdk.protocol.vocabulary import QUOTA_EXCEEDED, UsageKind
from reference_server.errors import QuotaExceeded
from reference_server.storage.records import UsageCell, UsageCounts, UsageRow
from reference_server.storage.service import StorageService

logger = logging.getLogger("reference_server.usage")


def month_bounds(now: float) -> tuple[int, int]:
    """The start of the calendar month (UTC) holding `now`, and the start of the next, in Unix seconds."""
    day = datetime.fromtimestamp(now, timezone.utc)
    start = datetime(day.year, day.month, 1, tzinfo=timezone.utc)
    following = datetime(day.year + day.month // 12, day.month % 12 + 1, 1, tzinfo=timezone.utc)
    return calendar.timegm(start.timetuple()), calendar.timegm(following.timetuple())


class UsageRecorder:
    """Counts per API key, model, kind and minute; `record` from anywhere, read with `usage`."""

    def __init__(self, storage: StorageService, flush_seconds: float = 1.0,
                 clock: Callable[[], float] = time.time) -> None:
        self._storage = storage
        self.flush_seconds = flush_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._pending: dict[UsageCell, UsageCounts] = {}
        self._unwritten: dict[str, int] = {}  # tokens per key in `_pending`
        self._writing: dict[str, int] = {}  # tokens per key in the flush being written
        self._month = 0  # the start of the month `_stored` counts
        self._stored: dict[str, int] = {}  # tokens this month per budgeted key, in the store at the last flush
        self._flushing = asyncio.Lock()  # made again by `start`, on the loop that serves
        self._task: asyncio.Task[None] | None = None

    def record(self, key: str, model: str, kind: UsageKind, *, requests: int = 1, prompt_tokens: int = 0,
               completion_tokens: int = 0, inputs: int = 0, trained_tokens: int = 0) -> None:
        """Count one use by `key` (a principal) of `model`: `requests` requests (one HTTP request
        is one, however many choices or inputs it had), the tokens read and written, the inputs
        embedded or classified, the tokens a fine-tuning job trained. Thread-safe and cheap."""
        counts = UsageCounts(requests=requests, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
                             inputs=inputs, trained_tokens=trained_tokens)
        cell = UsageCell(owner=key, minute=int(self._clock()) // 60 * 60, model=model, kind=kind)
        with self._lock:
            found = self._pending.get(cell)
            if found is None:
                self._pending[cell] = counts
            else:
                found.add(counts)
            self._unwritten[key] = self._unwritten.get(key, 0) + counts.tokens

    async def start(self) -> None:
        self._flushing = asyncio.Lock()
        self._task = asyncio.create_task(self._run(), name="usage-flush")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        try:
            await self.flush()
        except Exception:
            logger.exception("the last usage counts could not be written")

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.flush_seconds)
            try:
                await self.flush()
            except Exception:
                logger.exception("usage counts could not be written; trying again in %.1f s", self.flush_seconds)

    async def flush(self) -> None:
        """Write what was counted since the last flush, then re-read the budgeted keys' totals."""
        async with self._flushing:
            with self._lock:
                batch, self._pending = self._pending, {}
                self._writing, self._unwritten = self._unwritten, {}
                keys = list(self._stored)
            try:
                await self._storage.db.add_usage(list(batch.items()))
            except BaseException:
                with self._lock:
                    for cell, counts in batch.items():
                        self._pending.setdefault(cell, UsageCounts()).add(counts)
                    for key, tokens in self._writing.items():
                        self._unwritten[key] = self._unwritten.get(key, 0) + tokens
                    self._writing = {}
                raise
            stored = await self._storage.db.tokens_used(keys, self._month) if keys else {}
            with self._lock:
                self._stored.update(stored)
                self._writing = {}

    async def usage(self, key: str, start: int, end: int, width: int, *, by_model: bool = False,
                    by_kind: bool = False, models: Sequence[str] = (),
                    kinds: Sequence[str] = ()) -> list[UsageRow]:
        """`key`'s counts (see `Store.usage`), including everything recorded before this call."""
        await self.flush()
        rows: list[UsageRow] = await self._storage.db.usage(key, start, end, width, by_model=by_model,
                                                            by_kind=by_kind, models=models, kinds=kinds)
        return rows

    async def models_used(self, key: str, models: Sequence[str]) -> set[str]:
        """Which of `models` `key` ever used (what is still in memory included)."""
        with self._lock:
            pending = {cell.model for cell in self._pending if cell.owner == key and cell.model in models}
        stored: set[str] = await self._storage.db.models_used(key, models)
        return pending | stored

    async def check_quota(self, key: str, budget: int | None) -> None:
        """Raise `QuotaExceeded` if `key` has used `budget` tokens or more this month (None: no budget)."""
        if budget is None:
            return
        now = self._clock()
        month, renews = month_bounds(now)
        if key not in self._stored or month != self._month:
            async with self._flushing:  # a consistent start: no flush is half-way
                if month != self._month:
                    self._month, self._stored = month, {}
                if key not in self._stored:
                    self._stored.update(await self._storage.db.tokens_used([key], month))
        with self._lock:
            used = self._stored.get(key, 0) + self._unwritten.get(key, 0) + self._writing.get(key, 0)
        if used >= budget:
            wait = max(1, math.ceil(renews - now))
            when = datetime.fromtimestamp(renews, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
            raise QuotaExceeded(
                f"This API key has used {used} of its {budget} tokens this month; its budget renews at "
                f"{when} (in {wait} s).", code=QUOTA_EXCEEDED, retry_after=wait,
            )
