"""`Store`: the SQLite database behind files, fine-tuning jobs, events, checkpoints and idempotency keys.

The server and the training worker processes share one database file. WAL mode lets readers
run while a worker writes, `synchronous=FULL` makes every commit survive a crash of either
process, and `BEGIN IMMEDIATE` serialises writers so a read-modify-write never interleaves.

A worker's writes are fenced by the job's `attempt` counter and status: a worker whose job
was cancelled, or that outlived a server restart that re-queued its job, finds its updates
matching no row and stops, so it can never overwrite the state of a newer attempt.

`Store` is synchronous (one connection, used by one thread at a time); the server wraps it in
`AsyncStore`, which runs every call on a dedicated thread so the event loop never waits on
disk or on a lock held by a worker.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from reference_server.storage import ids
from reference_server.storage.records import (
    CheckpointRecord,
    EventRecord,
    FileRecord,
    JobRecord,
)
from reference_server.storage.schema import migrate

_JSON_COLUMNS = {"hyperparameters", "method", "error", "labels", "metrics", "data"}
_JOB_UPDATABLE = {
    "status", "finished_at", "fine_tuned_model", "trained_tokens", "error", "step", "total_steps",
    "attempt", "interruptions", "cancel_requested", "hyperparameters", "method",
}


class IdempotencyKeyReused(Exception):
    """The key was already used by this principal for a different request."""

    def __init__(self, job_id: str) -> None:
        super().__init__(job_id)
        self.job_id = job_id


@dataclass
class NewEvent:
    """An event to append to a job's log."""

    message: str
    level: str = "info"
    type: str = "message"
    data: dict[str, Any] | None = None


def _now() -> int:
    return int(time.time())


def _encode(column: str, value: Any) -> Any:
    if column in _JSON_COLUMNS and value is not None:
        return json.dumps(value, separators=(",", ":"), sort_keys=True)
    if isinstance(value, bool):
        return int(value)
    return value


def _row_to(cls: Any, row: sqlite3.Row) -> Any:
    names = {f.name for f in fields(cls)}
    values: dict[str, Any] = {}
    for key, value in dict(row).items():
        if key not in names:
            continue
        values[key] = json.loads(value) if key in _JSON_COLUMNS and value is not None else value
    if "cancel_requested" in values:
        values["cancel_requested"] = bool(values["cancel_requested"])
    return cls(**values)


class Store:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._conn = sqlite3.connect(str(self.path), timeout=30.0, isolation_level=None, check_same_thread=False)
        self._conn.row_factory = sqlite3.Row
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.execute("PRAGMA foreign_keys=ON")
        migrate(self._conn)

    def close(self) -> None:
        self._conn.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield self._conn
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    def _insert(self, conn: sqlite3.Connection, table: str, values: dict[str, Any]) -> None:
        columns = ", ".join(values)
        marks = ", ".join("?" for _ in values)
        conn.execute(f"INSERT INTO {table} ({columns}) VALUES ({marks})",
                     [_encode(k, v) for k, v in values.items()])

    def _page(self, table: str, where: str, args: Sequence[Any], after: str | None, limit: int,
              newest_first: bool = True) -> tuple[list[sqlite3.Row], bool]:
        """Rows of `table` matching `where`, after the row with id `after` (KeyError if unknown)."""
        order, cmp = ("DESC", "<") if newest_first else ("ASC", ">")
        params = list(args)
        if after is not None:
            found = self._conn.execute(f"SELECT seq FROM {table} WHERE id = ? AND {where}",
                                       [after, *args]).fetchone()
            if found is None:
                raise KeyError(after)
            where = f"{where} AND seq {cmp} ?"
            params.append(found["seq"])
        rows = self._conn.execute(f"SELECT * FROM {table} WHERE {where} ORDER BY seq {order} LIMIT ?",
                                  [*params, limit + 1]).fetchall()
        return rows[:limit], len(rows) > limit

    # Files

    def add_file(self, record: FileRecord) -> None:
        with self._transaction() as conn:
            self._insert(conn, "files", {f.name: getattr(record, f.name) for f in fields(record)})

    def get_file(self, file_id: str, owner: str | None = None) -> FileRecord | None:
        query, args = "SELECT * FROM files WHERE id = ?", [file_id]
        if owner is not None:
            query, args = query + " AND owner = ?", [file_id, owner]
        row = self._conn.execute(query, args).fetchone()
        return _row_to(FileRecord, row) if row else None

    def list_files(self, owner: str, *, purpose: str | None = None, after: str | None = None,
                   limit: int = 10000, newest_first: bool = True) -> tuple[list[FileRecord], bool]:
        where, args = "owner = ?", [owner]
        if purpose is not None:
            where, args = where + " AND purpose = ?", [owner, purpose]
        rows, more = self._page("files", where, args, after, limit, newest_first)
        return [_row_to(FileRecord, r) for r in rows], more

    def delete_file(self, file_id: str, owner: str) -> bool:
        with self._transaction() as conn:
            return conn.execute("DELETE FROM files WHERE id = ? AND owner = ?", [file_id, owner]).rowcount > 0

    def file_ids(self) -> set[str]:
        return {row[0] for row in self._conn.execute("SELECT id FROM files")}

    # Jobs

    def create_job(self, record: JobRecord, *, idempotency_key: str | None = None,
                   digest: str = "") -> tuple[JobRecord, bool]:
        """Insert the job, or return the one an earlier request with the same key created.

        Returns (job, created). Raises IdempotencyKeyReused if the key was used with another body.
        """
        with self._transaction() as conn:
            if idempotency_key is not None:
                row = conn.execute("SELECT job_id, digest FROM idempotency_keys WHERE owner = ? AND key = ?",
                                   [record.owner, idempotency_key]).fetchone()
                if row is not None:
                    if row["digest"] != digest:
                        raise IdempotencyKeyReused(row["job_id"])
                    existing = conn.execute("SELECT * FROM jobs WHERE id = ?", [row["job_id"]]).fetchone()
                    return _row_to(JobRecord, existing), False
            self._insert(conn, "jobs", {f.name: getattr(record, f.name) for f in fields(record)})
            if idempotency_key is not None:
                self._insert(conn, "idempotency_keys", {"owner": record.owner, "key": idempotency_key,
                                                        "job_id": record.id, "digest": digest,
                                                        "created_at": record.created_at})
            self._add_event(conn, record.id, NewEvent(f"Created fine-tuning job {record.id}."))
        return record, True

    def get_job(self, job_id: str, owner: str | None = None) -> JobRecord | None:
        query, args = "SELECT * FROM jobs WHERE id = ?", [job_id]
        if owner is not None:
            query, args = query + " AND owner = ?", [job_id, owner]
        row = self._conn.execute(query, args).fetchone()
        return _row_to(JobRecord, row) if row else None

    def list_jobs(self, owner: str, *, after: str | None = None,
                  limit: int = 20) -> tuple[list[JobRecord], bool]:
        rows, more = self._page("jobs", "owner = ?", [owner], after, limit)
        return [_row_to(JobRecord, r) for r in rows], more

    def jobs_in(self, *statuses: str) -> list[JobRecord]:
        """Jobs in any of `statuses`, oldest first (the order they are worked on)."""
        marks = ", ".join("?" for _ in statuses)
        rows = self._conn.execute(f"SELECT * FROM jobs WHERE status IN ({marks}) ORDER BY seq", statuses)
        return [_row_to(JobRecord, r) for r in rows]

    def update_job(self, job_id: str, *, if_status: Sequence[str] = (), if_attempt: int | None = None,
                   events: Sequence[NewEvent] = (), **changes: Any) -> bool:
        """Apply `changes` (and append `events`) only if the job is in one of `if_status` and at
        attempt `if_attempt` (when given). Returns whether the job matched; nothing is written if not."""
        unknown = set(changes) - _JOB_UPDATABLE
        if unknown:
            raise ValueError(f"cannot update job columns {sorted(unknown)}")
        changes["updated_at"] = _now()
        sets = ", ".join(f"{k} = ?" for k in changes)
        where = "id = ?"
        args: list[Any] = [job_id]
        if if_status:
            where += f" AND status IN ({', '.join('?' for _ in if_status)})"
            args += list(if_status)
        if if_attempt is not None:
            where += " AND attempt = ?"
            args.append(if_attempt)
        with self._transaction() as conn:
            matched = conn.execute(f"UPDATE jobs SET {sets} WHERE {where}",
                                   [_encode(k, v) for k, v in changes.items()] + args).rowcount > 0
            if matched:
                for event in events:
                    self._add_event(conn, job_id, event)
        return matched

    # Events

    def _add_event(self, conn: sqlite3.Connection, job_id: str, event: NewEvent) -> None:
        self._insert(conn, "events", {"id": ids.new_id(ids.EVENT), "job_id": job_id, "created_at": _now(),
                                      "level": event.level, "type": event.type, "message": event.message,
                                      "data": event.data})

    def add_event(self, job_id: str, event: NewEvent) -> None:
        with self._transaction() as conn:
            self._add_event(conn, job_id, event)

    def list_events(self, job_id: str, *, after: str | None = None,
                    limit: int = 20) -> tuple[list[EventRecord], bool]:
        """Newest first, like OpenAI; `after` is the last event id of the previous page."""
        rows, more = self._page("events", "job_id = ?", [job_id], after, limit)
        return [_row_to(EventRecord, r) for r in rows], more

    # Checkpoints

    def add_checkpoint(self, job_id: str, attempt: int, step: int, path: str,
                       metrics: dict[str, Any]) -> CheckpointRecord | None:
        """Record a checkpoint written by the worker of `attempt`; None if that worker is stale."""
        record = CheckpointRecord(id=ids.new_id(ids.CHECKPOINT), job_id=job_id, created_at=_now(),
                                  step_number=step, path=path, metrics=metrics)
        with self._transaction() as conn:
            live = conn.execute("SELECT 1 FROM jobs WHERE id = ? AND attempt = ? AND status = 'running'",
                                [job_id, attempt]).fetchone()
            if live is None:
                return None
            self._insert(conn, "checkpoints", {f.name: getattr(record, f.name) for f in fields(record)})
            self._add_event(conn, job_id, NewEvent(f"Checkpoint saved at step {step}.", type="checkpoint",
                                                   data={"step": step, "checkpoint": record.id}))
        return record

    def latest_checkpoint(self, job_id: str) -> CheckpointRecord | None:
        row = self._conn.execute("SELECT * FROM checkpoints WHERE job_id = ? ORDER BY seq DESC LIMIT 1",
                                 [job_id]).fetchone()
        return _row_to(CheckpointRecord, row) if row else None

    def list_checkpoints(self, job_id: str, *, after: str | None = None,
                         limit: int = 10) -> tuple[list[CheckpointRecord], bool]:
        rows, more = self._page("checkpoints", "job_id = ?", [job_id], after, limit)
        return [_row_to(CheckpointRecord, r) for r in rows], more

    def drop_old_checkpoints(self, job_id: str, keep: int) -> list[str]:
        """Forget all but the newest `keep` checkpoints; returns the folders to delete."""
        with self._transaction() as conn:
            rows = conn.execute("SELECT seq, path FROM checkpoints WHERE job_id = ? ORDER BY seq DESC LIMIT -1 "
                                "OFFSET ?", [job_id, keep]).fetchall()
            conn.executemany("DELETE FROM checkpoints WHERE seq = ?", [[r["seq"]] for r in rows])
        return [r["path"] for r in rows]

    # Recovery

    def recover(self, max_interruptions: int) -> list[tuple[str, str]]:
        """Make every job that was running when the server stopped truthful again.

        No worker survives its server, so a `running` job is really stopped:
        - cancelled, if its cancellation had been requested;
        - failed, if this is the `max_interruptions`-th crash to interrupt it (a job that keeps
          crashing the server must not crash it forever); a normal shutdown is no interruption;
        - otherwise queued again, to resume from its latest checkpoint, or from the start
          if it had none.
        Returns (job id, new status) for each job changed.
        """
        changed: list[tuple[str, str]] = []
        for job in self.jobs_in("running"):
            checkpoint = self.latest_checkpoint(job.id)
            if job.cancel_requested:
                status, error = "cancelled", None
                event = NewEvent("The job was cancelled while the server was stopping.")
            elif job.interruptions + 1 >= max_interruptions:
                status = "failed"
                message = (f"Training was interrupted {job.interruptions + 1} times by server crashes; "
                           "the job is not resumed again.")
                error = {"code": "interrupted", "message": message, "param": None}
                event = NewEvent(message, level="error")
            else:
                status, error = "queued", None
                if checkpoint is not None:
                    event = NewEvent(f"The server restarted during training; the job will resume from its "
                                     f"checkpoint at step {checkpoint.step_number}.", level="warn")
                else:
                    event = NewEvent("The server restarted before the first checkpoint; the job will start "
                                     "again from the beginning.", level="warn")
            terminal = status != "queued"
            if self.update_job(job.id, if_status=("running",), if_attempt=job.attempt, events=[event], status=status,
                               error=error, finished_at=_now() if terminal else None,
                               interruptions=job.interruptions + 1):
                changed.append((job.id, status))
        return changed
