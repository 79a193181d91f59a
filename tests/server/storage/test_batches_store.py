"""Batches in the store, on both backends: a line's result is recorded once however many
replicas or restarts record it, and only while the batch runs; the one lease that elects the
replica running batches; ownership and pagination like files and jobs."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from reference_server.storage import BatchRecord, Store, ids

REPLICAS = 8


def a_batch(owner: str = "alice", status: str = "in_progress", total: int = 3) -> BatchRecord:
    now = int(time.time())
    return BatchRecord(id=ids.new_id(ids.BATCH), owner=owner, endpoint="/v1/chat/completions",
                       input_file_id=ids.new_id(ids.FILE), completion_window="24h", status=status, created_at=now,
                       expires_at=now + 86400, total=total)


def test_a_line_is_recorded_once_by_many_replicas(where: Path | str) -> None:
    setup = Store(where)
    batch = a_batch()
    setup.create_batch(batch)
    stores = [Store(where) for _ in range(REPLICAS)]
    start = threading.Barrier(REPLICAS)

    def record(i: int) -> bool:
        start.wait()
        return stores[i].record_batch_result(batch.id, 2, "b", ok=True, result=f'{{"replica": {i}}}',
                                             input_tokens=5, output_tokens=7)

    try:
        with ThreadPoolExecutor(REPLICAS) as pool:
            recorded = list(pool.map(record, range(REPLICAS)))
    finally:
        for s in stores:
            s.close()
    assert recorded.count(True) == 1
    found = setup.get_batch(batch.id)
    assert found is not None
    assert (found.completed, found.failed, found.input_tokens, found.output_tokens) == (1, 0, 5, 7)
    assert setup.record_batch_result(batch.id, 1, "a", ok=False, result="{}")
    assert setup.recorded_lines(batch.id) == {1, 2}
    assert [n for n, _ in setup.batch_results(batch.id, ok=True)] == [2]
    assert [n for n, _ in setup.batch_results(batch.id, ok=False)] == [1]
    assert setup.get_batch(batch.id).failed == 1  # type: ignore[union-attr]
    setup.close()


def test_nothing_is_recorded_once_the_batch_stopped_running(where: Path | str) -> None:
    store = Store(where)
    batch = a_batch()
    store.create_batch(batch)
    assert store.update_batch(batch.id, if_status=("in_progress",), status="expired", expired_at=int(time.time()))
    assert not store.record_batch_result(batch.id, 1, "a", ok=True, result="{}")
    assert store.recorded_lines(batch.id) == set()
    assert not store.update_batch(batch.id, if_status=("in_progress",), status="completed")
    store.close()


def test_one_holder_of_the_lease_until_it_expires(where: Path | str) -> None:
    stores = [Store(where) for _ in range(REPLICAS)]
    start = threading.Barrier(REPLICAS)

    def claim(i: int) -> bool:
        start.wait()
        return stores[i].claim_lease("batch-runner", f"replica-{i}", 30)

    try:
        with ThreadPoolExecutor(REPLICAS) as pool:
            held = list(pool.map(claim, range(REPLICAS)))
        assert held.count(True) == 1
        holder = held.index(True)
        other = (holder + 1) % REPLICAS
        assert stores[holder].claim_lease("batch-runner", f"replica-{holder}", 30), "the holder renews it"
        assert not stores[other].claim_lease("batch-runner", f"replica-{other}", 30)
        stores[holder].release_lease("batch-runner", f"replica-{holder}")
        assert stores[other].claim_lease("batch-runner", f"replica-{other}", 0.2), "a released lease is free"
        time.sleep(0.4)
        assert stores[holder].claim_lease("batch-runner", f"replica-{holder}", 30), "an expired lease is free"
    finally:
        for s in stores:
            s.close()


def test_batches_are_per_owner_and_listed_newest_first(where: Path | str) -> None:
    store = Store(where)
    mine = [a_batch() for _ in range(3)]
    for batch in [*mine, a_batch(owner="bob")]:
        store.create_batch(batch)
    assert store.get_batch(mine[0].id, "bob") is None
    page, more = store.list_batches("alice", limit=2)
    assert [b.id for b in page] == [mine[2].id, mine[1].id] and more
    page, more = store.list_batches("alice", after=mine[1].id)
    assert [b.id for b in page] == [mine[0].id] and not more
    assert [b.id for b in store.batches_in("in_progress")][:3] == [b.id for b in mine]
    store.close()
