"""The SQLite store: ownership, pagination, idempotency, fenced updates and restart recovery."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

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


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "maas.sqlite3")
    yield s
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


def test_the_schema_is_versioned_and_a_newer_one_refused(tmp_path: Path) -> None:
    path = tmp_path / "maas.sqlite3"
    Store(path).close()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(SchemaTooNewError):
        Store(path)


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


def test_state_survives_reopening(tmp_path: Path) -> None:
    path = tmp_path / "maas.sqlite3"
    first = Store(path)
    record = a_file()
    first.add_file(record)
    job, _ = first.create_job(a_job(status="running", attempt=1))
    first.close()
    second = Store(path)
    assert second.get_file(record.id) == record
    assert second.get_job(job.id) == job
    second.close()


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
