"""The store on both backends (an SQLite file and a real PostgreSQL server): ownership,
pagination, idempotency, fenced updates, restart recovery, migrations, and writers on several
replicas at once (one `Store` per thread, as each replica has its own)."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest

from reference_server.storage import (
    DataLayout,
    FileRecord,
    IdempotencyKeyReused,
    JobRecord,
    NewEvent,
    Store,
    blobs,
    ids,
)
from reference_server.storage.schema import SCHEMA_VERSION, SchemaTooNewError

REPLICAS = 8


@pytest.fixture
def store(where: Path | str) -> Iterator[Store]:
    s = Store(where)
    yield s
    s.close()


def on_replicas(where: Path | str, work: Callable[[Store, int], Any], n: int = REPLICAS) -> list[Any]:
    """Run `work(store, i)` on `n` threads at once, each with its own `Store`, as replicas have."""
    stores = [Store(where) for _ in range(n)]
    start = threading.Barrier(n)

    def run(i: int) -> Any:
        start.wait()
        return work(stores[i], i)

    try:
        with ThreadPoolExecutor(n) as pool:
            return list(pool.map(run, range(n)))
    finally:
        for s in stores:
            s.close()


def a_file(owner: str = "alice", **changes: object) -> FileRecord:
    values: dict[str, object] = {
        "id": ids.new_id(ids.FILE), "owner": owner, "filename": "train.jsonl", "purpose": "fine-tune",
        "bytes": 10, "created_at": int(time.time()), "format": "classification", "lines": 2, "sha256": "0" * 64,
        "labels": ["negative", "positive"],
    }
    values.update(changes)
    return FileRecord(**values)  # type: ignore[arg-type]


def a_job(owner: str = "alice", **changes: object) -> JobRecord:
    now = int(time.time())
    values: dict[str, object] = {
        "id": ids.new_id(ids.JOB), "owner": owner, "created_at": now, "updated_at": now,
        "model": "all-minilm-l6-v2", "base_path": "/models/minilm", "kind": "classifier", "status": "queued",
        "training_file": ids.new_id(ids.FILE), "method": {"type": "full"}, "seed": 7,
        "hyperparameters": {"n_epochs": 1, "batch_size": 8, "learning_rate": 1e-4, "max_steps": None},
    }
    values.update(changes)
    return JobRecord(**values)  # type: ignore[arg-type]


def schema_version(where: Path | str, bump: bool = False) -> int:
    """The version the database records (raised by one first, if `bump`), read without the store."""
    if isinstance(where, Path):
        conn = sqlite3.connect(where)
        if bump:
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        conn.close()
        return version
    with psycopg.connect(where, autocommit=True) as pg:
        if bump:
            pg.execute("UPDATE maas_schema SET version = version + 1")
        row = pg.execute("SELECT version FROM maas_schema").fetchone()
        assert row is not None
        return int(row[0])


def test_the_schema_is_versioned_and_a_newer_one_refused(where: Path | str) -> None:
    Store(where).close()
    assert schema_version(where) == SCHEMA_VERSION
    Store(where).close()  # a second start migrates nothing
    assert schema_version(where, bump=True) == SCHEMA_VERSION + 1
    with pytest.raises(SchemaTooNewError):
        Store(where)


def test_replicas_starting_together_migrate_once(where: Path | str) -> None:
    on_replicas(where, lambda s, i: s.file_ids())
    assert schema_version(where) == SCHEMA_VERSION


def test_files_are_seen_only_by_their_owner(store: Store) -> None:
    mine, theirs = a_file("alice"), a_file("bob")
    store.add_file(mine)
    store.add_file(theirs)
    assert store.get_file(mine.id, "alice") == mine
    assert store.get_file(mine.id, "bob") is None
    assert [f.id for f in store.list_files("bob")[0]] == [theirs.id]
    assert not store.delete_file(mine.id, "bob")
    assert store.delete_file(mine.id, "alice")
    assert store.get_file(mine.id) is None


def test_jobs_page_newest_first_with_a_cursor(store: Store) -> None:
    created = [store.create_job(a_job())[0] for _ in range(5)]
    store.create_job(a_job("bob"))
    page, more = store.list_jobs("alice", limit=2)
    assert [j.id for j in page] == [created[4].id, created[3].id] and more
    page, more = store.list_jobs("alice", after=page[-1].id, limit=10)
    assert [j.id for j in page] == [c.id for c in reversed(created[:3])] and not more
    with pytest.raises(KeyError):
        store.list_jobs("bob", after=created[0].id)


def test_an_idempotency_key_returns_the_first_job(store: Store) -> None:
    first, created = store.create_job(a_job(), idempotency_key="k1", digest="body-a")
    again, created_again = store.create_job(a_job(), idempotency_key="k1", digest="body-a")
    assert created and not created_again and again.id == first.id
    other_owner, created_other = store.create_job(a_job("bob"), idempotency_key="k1", digest="body-a")
    assert created_other and other_owner.id != first.id
    with pytest.raises(IdempotencyKeyReused):
        store.create_job(a_job(), idempotency_key="k1", digest="body-b")
    assert len(store.list_jobs("alice")[0]) == 1


def test_updates_are_fenced_by_status_and_attempt(store: Store) -> None:
    job, _ = store.create_job(a_job(status="running", attempt=2))
    assert not store.update_job(job.id, if_status=("running",), if_attempt=1, step=5,
                                events=[NewEvent("stale worker")])
    assert store.update_job(job.id, if_status=("running",), if_attempt=2, step=5, events=[NewEvent("live")])
    messages = [e.message for e in store.list_events(job.id)[0]]
    assert "live" in messages and "stale worker" not in messages
    assert store.get_job(job.id).step == 5  # type: ignore[union-attr]
    assert store.add_checkpoint(job.id, 1, 5, "/x", {}) is None
    assert store.add_checkpoint(job.id, 2, 5, "/x", {}) is not None


def test_events_page_newest_first(store: Store) -> None:
    job, _ = store.create_job(a_job())
    for i in range(4):
        store.add_event(job.id, NewEvent(f"event {i}"))
    page, more = store.list_events(job.id, limit=2)
    assert [e.message for e in page] == ["event 3", "event 2"] and more
    page, _ = store.list_events(job.id, after=page[-1].id, limit=10)
    assert [e.message for e in page] == ["event 1", "event 0", f"Created fine-tuning job {job.id}."]


def test_only_the_newest_checkpoints_are_kept(store: Store) -> None:
    job, _ = store.create_job(a_job(status="running", attempt=1))
    for step in (10, 20, 30, 40):
        store.add_checkpoint(job.id, 1, step, f"/ckpt/{step}", {"step": step})
    assert store.drop_old_checkpoints(job.id, keep=3) == ["/ckpt/10"]
    assert [c.step_number for c in store.list_checkpoints(job.id)[0]] == [40, 30, 20]
    assert store.latest_checkpoint(job.id).step_number == 40  # type: ignore[union-attr]


def test_recovery_makes_every_interrupted_job_truthful(store: Store) -> None:
    with_checkpoint, _ = store.create_job(a_job(status="running", attempt=1))
    store.add_checkpoint(with_checkpoint.id, 1, 12, "/ckpt", {})
    without_checkpoint, _ = store.create_job(a_job(status="running", attempt=1))
    cancelling, _ = store.create_job(a_job(status="running", attempt=1, cancel_requested=True))
    worn_out, _ = store.create_job(a_job(status="running", attempt=5, interruptions=2))
    queued, _ = store.create_job(a_job(status="queued"))
    done, _ = store.create_job(a_job(status="succeeded"))

    changed = dict(store.recover(max_interruptions=3))

    assert changed == {with_checkpoint.id: "queued", without_checkpoint.id: "queued",
                       cancelling.id: "cancelled", worn_out.id: "failed"}
    resumed = store.get_job(with_checkpoint.id)
    assert resumed is not None and resumed.status == "queued" and resumed.finished_at is None
    assert "resume from its checkpoint at step 12" in store.list_events(with_checkpoint.id)[0][0].message
    assert "from the beginning" in store.list_events(without_checkpoint.id)[0][0].message
    failed = store.get_job(worn_out.id)
    assert failed is not None and failed.error is not None and failed.error["code"] == "interrupted"
    assert failed.finished_at is not None
    assert store.get_job(cancelling.id).finished_at is not None  # type: ignore[union-attr]
    assert store.get_job(queued.id).status == "queued"  # type: ignore[union-attr]
    assert store.get_job(done.id).status == "succeeded"  # type: ignore[union-attr]
    assert store.get_job(without_checkpoint.id).interruptions == 1  # type: ignore[union-attr]
    assert store.recover(max_interruptions=3) == []


def test_state_survives_reopening(where: Path | str) -> None:
    first = Store(where)
    record = a_file()
    first.add_file(record)
    job, _ = first.create_job(a_job(status="running", attempt=1))
    first.close()
    second = Store(where)
    assert second.get_file(record.id) == record
    assert second.get_job(job.id) == job
    second.close()


def test_one_idempotency_key_on_many_replicas_creates_one_job(where: Path | str) -> None:
    def create(store: Store, i: int) -> tuple[str, bool]:
        job, created = store.create_job(a_job(), idempotency_key="same-key", digest="body")
        return job.id, created

    results = on_replicas(where, create)
    assert len({job_id for job_id, _ in results}) == 1
    assert sum(created for _, created in results) == 1
    with _opened(where) as store:
        assert len(store.list_jobs("alice")[0]) == 1


def test_a_job_moves_out_of_a_status_exactly_once(where: Path | str) -> None:
    with _opened(where) as store:
        job, _ = store.create_job(a_job(status="queued"))

    def launch(store: Store, i: int) -> bool:
        return store.update_job(job.id, if_status=("queued",), status="running", attempt=i + 1,
                                events=[NewEvent(f"started by replica {i}")])

    won = [i for i, ok in enumerate(on_replicas(where, launch)) if ok]
    assert len(won) == 1
    with _opened(where) as store:
        final = store.get_job(job.id)
        assert final is not None and (final.status, final.attempt) == ("running", won[0] + 1)
        started = [e.message for e in store.list_events(job.id, limit=100)[0] if e.message.startswith("started")]
        assert started == [f"started by replica {won[0]}"]


def test_concurrent_writers_lose_no_update(where: Path | str) -> None:
    """Each replica bumps the attempt counter by compare-and-set (as the supervisor does), and
    appends events, all at once: every successful bump and every event is in the final state."""
    with _opened(where) as store:
        job, _ = store.create_job(a_job(status="running"))
    per_replica = 15

    def bump(store: Store, i: int) -> int:
        wins = 0
        while wins < per_replica:
            current = store.get_job(job.id)
            assert current is not None
            if store.update_job(job.id, if_attempt=current.attempt, attempt=current.attempt + 1):
                wins += 1
            store.add_event(job.id, NewEvent(f"replica {i}", type="metrics"))
        return wins

    total = sum(on_replicas(where, bump))
    with _opened(where) as store:
        final = store.get_job(job.id)
        assert final is not None and final.attempt == total == REPLICAS * per_replica
        events = store.list_events(job.id, limit=100000)[0]
        assert len({e.id for e in events}) == len(events)
        assert len([e for e in events if e.type == "metrics"]) >= total


def test_a_stale_checkpoint_never_lands_after_a_recovery(where: Path | str) -> None:
    """A worker saving checkpoints while another replica re-queues its job: none is recorded
    for the attempt once the job left `running`."""
    with _opened(where) as store:
        job, _ = store.create_job(a_job(status="running", attempt=1))

    def work(store: Store, i: int) -> list[Any]:
        if i == 0:
            time.sleep(0.05)
            return [store.recover(max_interruptions=3)]
        return [store.add_checkpoint(job.id, 1, 10 * i + k, f"/ckpt/{i}/{k}", {}) for k in range(10)]

    results = on_replicas(where, work, n=4)
    saved = [c for saves in results[1:] for c in saves if c is not None]
    with _opened(where) as store:
        assert store.get_job(job.id).status == "queued"  # type: ignore[union-attr]
        assert {c.id for c in store.list_checkpoints(job.id, limit=1000)[0]} == {c.id for c in saved}
        newest_first = [e.type if e.type == "checkpoint" else e.message
                        for e in store.list_events(job.id, limit=1000)[0]]
        requeued = next(i for i, m in enumerate(newest_first) if "restarted" in m)
        assert "checkpoint" not in newest_first[:requeued]
        assert newest_first.count("checkpoint") == len(saved)


def test_ids_are_strict_and_paths_stay_inside_the_data_dir(tmp_path: Path) -> None:
    layout = DataLayout(tmp_path)
    good = ids.new_id(ids.FILE)
    assert layout.file_path(good).parent == layout.files_dir
    for bad in ("../../etc/passwd", "file-../x", good.upper(), good + "0", ids.new_id(ids.JOB), "file-"):
        assert not ids.is_valid(ids.FILE, bad)
        with pytest.raises(ValueError):
            layout.file_path(bad)
    with pytest.raises(ValueError):
        layout.model_dir("../models")


def test_startup_sweep_removes_only_unrecorded_files(tmp_path: Path) -> None:
    layout = DataLayout(tmp_path)
    layout.create()
    kept, orphan = ids.new_id(ids.FILE), ids.new_id(ids.FILE)
    blobs.write_atomic(layout.file_path(kept), b"kept")
    blobs.write_atomic(layout.file_path(orphan), b"orphan")
    (layout.files_dir / ".tmp-half-written").write_bytes(b"x")
    assert sorted(blobs.sweep(layout, {kept})) == sorted([orphan, ".tmp-half-written"])
    assert [p.name for p in layout.files_dir.iterdir()] == [kept]
    assert layout.file_path(kept).read_bytes() == b"kept"


@contextmanager
def _opened(where: Path | str) -> Iterator[Store]:
    store = Store(where)
    try:
        yield store
    finally:
        store.close()
