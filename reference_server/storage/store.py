"""`Store`: the database behind files, fine-tuning jobs, events, checkpoints, idempotency keys and
batches (with the result of each of their lines, and the lease of the replica running them).

One API over two backends (see `database`): an embedded SQLite file, which the server and its
training worker processes share, or a PostgreSQL server, which every replica of a cluster and
its training workers share. Every write is one transaction; the ones that read before they
write lock what they read (SQLite: the whole database, `BEGIN IMMEDIATE`; PostgreSQL: the
job's row, `FOR UPDATE`), and state transitions are conditional updates, so writers on many
replicas at once never lose an update.

A worker's writes are fenced by the job's `attempt` counter and status: a worker whose job
was cancelled, or that outlived a server restart that re-queued its job, finds its updates
matching no row and stops, so it can never overwrite the state of a newer attempt.

`Store` is synchronous (its calls may come from any thread; each takes a pooled connection);
the server wraps it in `AsyncStore`, which runs every call on a dedicated thread so the event
loop never waits on disk, the network or a lock held by a worker.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, bindparam, text

from reference_server.storage import database, ids
from reference_server.storage.records import (
    BatchRecord,
    CheckpointRecord,
    EventRecord,
    FileRecord,
    JobRecord,
    ResponseRecord,
    UsageCell,
    UsageCounts,
    UsageRow,
)
from reference_server.storage.schema import migrate

_JSON_COLUMNS = {"hyperparameters", "method", "error", "labels", "metrics", "data", "body", "input_items",
                 "conversation", "metadata", "errors"}
# JSON kept in the order it was written: API objects whose key order the caller sees.
_ORDERED_JSON = {"body", "input_items", "conversation"}
_COUNTS = ("requests", "prompt_tokens", "completion_tokens", "inputs", "trained_tokens")
_JOB_UPDATABLE = {
    "status", "finished_at", "fine_tuned_model", "trained_tokens", "error", "step", "total_steps",
    "attempt", "interruptions", "cancel_requested", "hyperparameters", "method",
}
_BATCH_UPDATABLE = {
    "status", "errors", "output_file_id", "error_file_id", "in_progress_at", "finalizing_at", "completed_at",
    "failed_at", "expired_at", "cancelling_at", "cancelled_at", "total",
}
# Statuses in which a batch's lines may still be recorded.
_RECORDING = ("in_progress", "cancelling")


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
        return json.dumps(value, separators=(",", ":"), sort_keys=column not in _ORDERED_JSON)
    if isinstance(value, bool):
        return int(value)
    return value


def _row_to(cls: Any, row: Mapping[str, Any]) -> Any:
    names = {f.name for f in fields(cls)}
    values: dict[str, Any] = {}
    for key, value in row.items():
        if key not in names:
            continue
        values[key] = json.loads(value) if key in _JSON_COLUMNS and value is not None else value
    if "cancel_requested" in values:
        values["cancel_requested"] = bool(values["cancel_requested"])
    return cls(**values)


def _sql(sql: str, params: Mapping[str, Any]) -> Any:
    """`sql` as a statement; list parameters expand, so `x IN :names` takes a list."""
    statement = text(sql)
    expanding: list[Any] = [bindparam(k, expanding=True) for k, v in params.items() if isinstance(v, list)]
    return statement.bindparams(*expanding) if expanding else statement


class Store:
    def __init__(self, where: Path | str) -> None:
        """`where`: a SQLite file's path, or a database URL (`postgresql://user:pw@host/db`)."""
        self.url = database.url_of(where)
        self._engine = database.create(self.url)
        self.backend = self._engine.dialect.name
        # Locks the rows a write transaction reads (SQLite's BEGIN IMMEDIATE already locks everything).
        self._for_update = " FOR UPDATE" if self.backend == "postgresql" else ""
        with self._transaction() as conn:
            migrate(conn)

    def close(self) -> None:
        self._engine.dispose()

    @contextmanager
    def _transaction(self) -> Iterator[Connection]:
        """A write transaction, committed when the block ends, rolled back if it raises."""
        with self._engine.connect() as conn:
            conn.execution_options(**{database.WRITE: True})
            with conn.begin():
                yield conn

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        with self._engine.connect() as conn:
            yield conn

    def _rows(self, conn: Connection, sql: str, **params: Any) -> list[Mapping[str, Any]]:
        return [dict(row._mapping) for row in conn.execute(_sql(sql, params), params)]

    def _one(self, conn: Connection, sql: str, **params: Any) -> Mapping[str, Any] | None:
        rows = self._rows(conn, sql, **params)
        return rows[0] if rows else None

    def _write(self, conn: Connection, sql: str, **params: Any) -> int:
        """Run an INSERT, UPDATE or DELETE; returns the rows it matched."""
        return int(conn.execute(_sql(sql, params), params).rowcount)

    def _insert(self, conn: Connection, table: str, values: dict[str, Any]) -> None:
        columns = ", ".join(values)
        marks = ", ".join(f":{k}" for k in values)
        self._write(conn, f"INSERT INTO {table} ({columns}) VALUES ({marks})",
                    **{k: _encode(k, v) for k, v in values.items()})

    def _page(self, table: str, where: str, args: dict[str, Any], after: str | None, limit: int,
              newest_first: bool = True) -> tuple[list[Mapping[str, Any]], bool]:
        """Rows of `table` matching `where`, after the row with id `after` (KeyError if unknown)."""
        order, cmp = ("DESC", "<") if newest_first else ("ASC", ">")
        params = dict(args)
        with self._read() as conn:
            if after is not None:
                found = self._one(conn, f"SELECT seq FROM {table} WHERE id = :after AND {where}",
                                  after=after, **args)
                if found is None:
                    raise KeyError(after)
                where = f"{where} AND seq {cmp} :after_seq"
                params["after_seq"] = found["seq"]
            rows = self._rows(conn, f"SELECT * FROM {table} WHERE {where} ORDER BY seq {order} LIMIT :limit",
                              limit=limit + 1, **params)
        return rows[:limit], len(rows) > limit

    # Files

    def add_file(self, record: FileRecord) -> None:
        with self._transaction() as conn:
            self._insert(conn, "files", {f.name: getattr(record, f.name) for f in fields(record)})

    def get_file(self, file_id: str, owner: str | None = None) -> FileRecord | None:
        query = "SELECT * FROM files WHERE id = :id" + (" AND owner = :owner" if owner is not None else "")
        with self._read() as conn:
            row = self._one(conn, query, id=file_id, owner=owner)
        return _row_to(FileRecord, row) if row else None

    def list_files(self, owner: str, *, purpose: str | None = None, after: str | None = None,
                   limit: int = 10000, newest_first: bool = True) -> tuple[list[FileRecord], bool]:
        where, args = "owner = :owner", {"owner": owner}
        if purpose is not None:
            where, args = where + " AND purpose = :purpose", {**args, "purpose": purpose}
        rows, more = self._page("files", where, args, after, limit, newest_first)
        return [_row_to(FileRecord, r) for r in rows], more

    def delete_file(self, file_id: str, owner: str) -> bool:
        with self._transaction() as conn:
            return self._write(conn, "DELETE FROM files WHERE id = :id AND owner = :owner",
                               id=file_id, owner=owner) > 0

    def file_ids(self) -> set[str]:
        with self._read() as conn:
            return {row["id"] for row in self._rows(conn, "SELECT id FROM files")}

    # Responses

    def add_response(self, record: ResponseRecord) -> None:
        """Store `record`, and forget every response whose time has passed."""
        with self._transaction() as conn:
            self._write(conn, "DELETE FROM responses WHERE expires_at <= :now", now=record.created_at)
            self._insert(conn, "responses", {f.name: getattr(record, f.name) for f in fields(record)})

    def get_response(self, response_id: str, owner: str, now: int) -> ResponseRecord | None:
        """`owner`'s response `response_id`, unless it has expired by `now`."""
        with self._read() as conn:
            row = self._one(conn, "SELECT * FROM responses WHERE id = :id AND owner = :owner AND expires_at > :now",
                            id=response_id, owner=owner, now=now)
        return _row_to(ResponseRecord, row) if row else None

    def delete_response(self, response_id: str, owner: str) -> bool:
        with self._transaction() as conn:
            return self._write(conn, "DELETE FROM responses WHERE id = :id AND owner = :owner",
                               id=response_id, owner=owner) > 0

    # Jobs

    def create_job(self, record: JobRecord, *, idempotency_key: str | None = None,
                   digest: str = "") -> tuple[JobRecord, bool]:
        """Insert the job, or return the one an earlier request with the same key created.

        Returns (job, created). Raises IdempotencyKeyReused if the key was used with another body.
        The key is claimed first, by an insert that does nothing if the key exists: of two replicas
        creating with one key at once, the second waits for the first to commit, then finds its job.
        """
        with self._transaction() as conn:
            if idempotency_key is not None:
                claimed = self._write(
                    conn, "INSERT INTO idempotency_keys (owner, key, job_id, digest, created_at) "
                          "VALUES (:owner, :key, :job_id, :digest, :created_at) ON CONFLICT (owner, key) DO NOTHING",
                    owner=record.owner, key=idempotency_key, job_id=record.id, digest=digest,
                    created_at=record.created_at)
                if not claimed:
                    row = self._one(conn, "SELECT job_id, digest FROM idempotency_keys "
                                          "WHERE owner = :owner AND key = :key",
                                    owner=record.owner, key=idempotency_key)
                    assert row is not None  # the conflict was with a committed row
                    if row["digest"] != digest:
                        raise IdempotencyKeyReused(row["job_id"])
                    existing = self._one(conn, "SELECT * FROM jobs WHERE id = :id", id=row["job_id"])
                    assert existing is not None  # written in the same transaction as its key
                    return _row_to(JobRecord, existing), False
            self._insert(conn, "jobs", {f.name: getattr(record, f.name) for f in fields(record)})
            self._add_event(conn, record.id, NewEvent(f"Created fine-tuning job {record.id}."))
        return record, True

    def get_job(self, job_id: str, owner: str | None = None) -> JobRecord | None:
        query = "SELECT * FROM jobs WHERE id = :id" + (" AND owner = :owner" if owner is not None else "")
        with self._read() as conn:
            row = self._one(conn, query, id=job_id, owner=owner)
        return _row_to(JobRecord, row) if row else None

    def list_jobs(self, owner: str, *, after: str | None = None,
                  limit: int = 20) -> tuple[list[JobRecord], bool]:
        rows, more = self._page("jobs", "owner = :owner", {"owner": owner}, after, limit)
        return [_row_to(JobRecord, r) for r in rows], more

    def jobs_in(self, *statuses: str) -> list[JobRecord]:
        """Jobs in any of `statuses`, oldest first (the order they are worked on)."""
        with self._read() as conn:
            rows = self._rows(conn, "SELECT * FROM jobs WHERE status IN :statuses ORDER BY seq",
                              statuses=list(statuses))
        return [_row_to(JobRecord, r) for r in rows]

    def update_job(self, job_id: str, *, if_status: Sequence[str] = (), if_attempt: int | None = None,
                   events: Sequence[NewEvent] = (), **changes: Any) -> bool:
        """Apply `changes` (and append `events`) only if the job is in one of `if_status` and at
        attempt `if_attempt` (when given). Returns whether the job matched; nothing is written if not.

        One conditional UPDATE: the database re-checks the condition on the row it locks, so of
        two replicas moving a job out of the same status at once, exactly one succeeds."""
        unknown = set(changes) - _JOB_UPDATABLE
        if unknown:
            raise ValueError(f"cannot update job columns {sorted(unknown)}")
        changes["updated_at"] = _now()
        sets = ", ".join(f"{k} = :set_{k}" for k in changes)
        where = "id = :id"
        params: dict[str, Any] = {f"set_{k}": _encode(k, v) for k, v in changes.items()}
        params["id"] = job_id
        if if_status:
            where += " AND status IN :if_status"
            params["if_status"] = list(if_status)
        if if_attempt is not None:
            where += " AND attempt = :if_attempt"
            params["if_attempt"] = if_attempt
        with self._transaction() as conn:
            matched = self._write(conn, f"UPDATE jobs SET {sets} WHERE {where}", **params) > 0
            if matched:
                for event in events:
                    self._add_event(conn, job_id, event)
        return matched

    # Events

    def _add_event(self, conn: Connection, job_id: str, event: NewEvent) -> None:
        self._insert(conn, "events", {"id": ids.new_id(ids.EVENT), "job_id": job_id, "created_at": _now(),
                                      "level": event.level, "type": event.type, "message": event.message,
                                      "data": event.data})

    def add_event(self, job_id: str, event: NewEvent) -> None:
        with self._transaction() as conn:
            self._add_event(conn, job_id, event)

    def list_events(self, job_id: str, *, after: str | None = None,
                    limit: int = 20) -> tuple[list[EventRecord], bool]:
        """Newest first, like OpenAI; `after` is the last event id of the previous page."""
        rows, more = self._page("events", "job_id = :job_id", {"job_id": job_id}, after, limit)
        return [_row_to(EventRecord, r) for r in rows], more

    # Checkpoints

    def add_checkpoint(self, job_id: str, attempt: int, step: int, path: str,
                       metrics: dict[str, Any]) -> CheckpointRecord | None:
        """Record a checkpoint written by the worker of `attempt`; None if that worker is stale."""
        record = CheckpointRecord(id=ids.new_id(ids.CHECKPOINT), job_id=job_id, created_at=_now(),
                                  step_number=step, path=path, metrics=metrics)
        with self._transaction() as conn:
            live = self._one(conn, "SELECT id FROM jobs WHERE id = :id AND attempt = :attempt AND status = 'running'"
                                   + self._for_update, id=job_id, attempt=attempt)
            if live is None:
                return None
            self._insert(conn, "checkpoints", {f.name: getattr(record, f.name) for f in fields(record)})
            self._add_event(conn, job_id, NewEvent(f"Checkpoint saved at step {step}.", type="checkpoint",
                                                   data={"step": step, "checkpoint": record.id}))
        return record

    def latest_checkpoint(self, job_id: str) -> CheckpointRecord | None:
        with self._read() as conn:
            row = self._one(conn, "SELECT * FROM checkpoints WHERE job_id = :job_id ORDER BY seq DESC LIMIT 1",
                            job_id=job_id)
        return _row_to(CheckpointRecord, row) if row else None

    def list_checkpoints(self, job_id: str, *, after: str | None = None,
                         limit: int = 10) -> tuple[list[CheckpointRecord], bool]:
        rows, more = self._page("checkpoints", "job_id = :job_id", {"job_id": job_id}, after, limit)
        return [_row_to(CheckpointRecord, r) for r in rows], more

    def drop_old_checkpoints(self, job_id: str, keep: int) -> list[str]:
        """Forget all but the newest `keep` checkpoints; returns the folders to delete."""
        with self._transaction() as conn:
            rows = self._rows(conn, "SELECT seq, path FROM checkpoints WHERE job_id = :job_id ORDER BY seq DESC",
                              job_id=job_id)[keep:]
            if rows:
                self._write(conn, "DELETE FROM checkpoints WHERE seq IN :seqs", seqs=[r["seq"] for r in rows])
        return [r["path"] for r in rows]

    # Batches

    def create_batch(self, record: BatchRecord) -> None:
        with self._transaction() as conn:
            self._insert(conn, "batches", {f.name: getattr(record, f.name) for f in fields(record)})

    def get_batch(self, batch_id: str, owner: str | None = None) -> BatchRecord | None:
        query = "SELECT * FROM batches WHERE id = :id" + (" AND owner = :owner" if owner is not None else "")
        with self._read() as conn:
            row = self._one(conn, query, id=batch_id, owner=owner)
        return _row_to(BatchRecord, row) if row else None

    def list_batches(self, owner: str, *, after: str | None = None,
                     limit: int = 20) -> tuple[list[BatchRecord], bool]:
        rows, more = self._page("batches", "owner = :owner", {"owner": owner}, after, limit)
        return [_row_to(BatchRecord, r) for r in rows], more

    def batches_in(self, *statuses: str) -> list[BatchRecord]:
        """Batches in any of `statuses`, oldest first (the order they are run in)."""
        with self._read() as conn:
            rows = self._rows(conn, "SELECT * FROM batches WHERE status IN :statuses ORDER BY seq",
                              statuses=list(statuses))
        return [_row_to(BatchRecord, r) for r in rows]

    def update_batch(self, batch_id: str, *, if_status: Sequence[str] = (), files: Sequence[FileRecord] = (),
                     **changes: Any) -> bool:
        """Apply `changes` only if the batch is in one of `if_status` (when given), and add
        `files` (its output and error files) in the same transaction. Whether it matched."""
        unknown = set(changes) - _BATCH_UPDATABLE
        if unknown:
            raise ValueError(f"cannot update batch columns {sorted(unknown)}")
        sets = ", ".join(f"{k} = :set_{k}" for k in changes)
        params: dict[str, Any] = {f"set_{k}": _encode(k, v) for k, v in changes.items()}
        params["id"] = batch_id
        where = "id = :id"
        if if_status:
            where += " AND status IN :if_status"
            params["if_status"] = list(if_status)
        with self._transaction() as conn:
            if not self._write(conn, f"UPDATE batches SET {sets} WHERE {where}", **params):
                return False
            for record in files:
                self._insert(conn, "files", {f.name: getattr(record, f.name) for f in fields(record)})
        return True

    def record_batch_result(self, batch_id: str, line_number: int, custom_id: str, *, ok: bool, result: str,
                            input_tokens: int = 0, output_tokens: int = 0) -> bool:
        """Keep the result of one line and count it, once: a line already recorded, or a batch no
        longer running (expired, cancelled, finished), records nothing. Whether it was recorded."""
        with self._transaction() as conn:
            live = self._one(conn, "SELECT id FROM batches WHERE id = :id AND status IN :statuses"
                                   + self._for_update, id=batch_id, statuses=list(_RECORDING))
            if live is None:
                return False
            added = self._write(
                conn, "INSERT INTO batch_results (batch_id, line_number, custom_id, ok, result) "
                      "VALUES (:batch_id, :line_number, :custom_id, :ok, :result) "
                      "ON CONFLICT (batch_id, line_number) DO NOTHING",
                batch_id=batch_id, line_number=line_number, custom_id=custom_id, ok=int(ok), result=result)
            if not added:
                return False
            self._write(conn, "UPDATE batches SET completed = completed + :ok, failed = failed + :failed, "
                              "input_tokens = input_tokens + :input_tokens, "
                              "output_tokens = output_tokens + :output_tokens WHERE id = :id",
                        ok=int(ok), failed=int(not ok), input_tokens=input_tokens, output_tokens=output_tokens,
                        id=batch_id)
        return True

    def recorded_lines(self, batch_id: str) -> set[int]:
        """The line numbers of `batch_id` whose result is recorded."""
        with self._read() as conn:
            rows = self._rows(conn, "SELECT line_number FROM batch_results WHERE batch_id = :id", id=batch_id)
        return {int(r["line_number"]) for r in rows}

    def batch_results(self, batch_id: str, *, ok: bool, after_line: int = 0,
                      limit: int = 1000) -> list[tuple[int, str]]:
        """(line number, result line) of the lines of `batch_id` that succeeded (`ok`) or not, in
        line order, after `after_line`."""
        with self._read() as conn:
            rows = self._rows(conn, "SELECT line_number, result FROM batch_results WHERE batch_id = :id "
                                    "AND ok = :ok AND line_number > :after ORDER BY line_number LIMIT :limit",
                              id=batch_id, ok=int(ok), after=after_line, limit=limit)
        return [(int(r["line_number"]), str(r["result"])) for r in rows]

    def drop_batch_results(self, batch_id: str) -> None:
        """Forget the per-line results once they are in the batch's output files."""
        with self._transaction() as conn:
            self._write(conn, "DELETE FROM batch_results WHERE batch_id = :id", id=batch_id)

    # Leases

    def claim_lease(self, name: str, holder: str, seconds: float) -> bool:
        """Take or renew the lease `name` for `seconds`; False while another holder's is unexpired.
        Conditional writes: of two replicas claiming at once, one gets it."""
        now = time.time()
        with self._transaction() as conn:
            renewed = self._write(conn, "UPDATE leases SET holder = :holder, expires_at = :until "
                                        "WHERE name = :name AND (holder = :holder OR expires_at < :now)",
                                  name=name, holder=holder, until=now + seconds, now=now)
            if renewed:
                return True
            return self._write(conn, "INSERT INTO leases (name, holder, expires_at) VALUES (:name, :holder, :until) "
                                     "ON CONFLICT (name) DO NOTHING",
                               name=name, holder=holder, until=now + seconds) > 0

    def release_lease(self, name: str, holder: str) -> None:
        with self._transaction() as conn:
            self._write(conn, "DELETE FROM leases WHERE name = :name AND holder = :holder", name=name, holder=holder)
    # Usage

    def add_usage(self, cells: Sequence[tuple[UsageCell, UsageCounts]]) -> None:
        """Add `cells`' counts to what the store holds, in one transaction: an upsert per cell,
        so replicas adding to the same cell at once never lose a count."""
        if not cells:
            return
        sums = ", ".join(f"{c} = usage_counts.{c} + excluded.{c}" for c in _COUNTS)
        sql = (f"INSERT INTO usage_counts (owner, minute, model, kind, {', '.join(_COUNTS)}) "
               f"VALUES (:owner, :minute, :model, :kind, {', '.join(':' + c for c in _COUNTS)}) "
               f"ON CONFLICT (owner, minute, model, kind) DO UPDATE SET {sums}")
        rows = [{"owner": cell.owner, "minute": cell.minute, "model": cell.model, "kind": cell.kind,
                 **{c: getattr(counts, c) for c in _COUNTS}} for cell, counts in cells]
        with self._transaction() as conn:
            conn.execute(text(sql), rows)

    def usage(self, owner: str, start: int, end: int, width: int, *, by_model: bool = False,
              by_kind: bool = False, models: Sequence[str] = (), kinds: Sequence[str] = ()) -> list[UsageRow]:
        """`owner`'s counts from `start` (inclusive) to `end` (exclusive), added up per bucket of
        `width` seconds (buckets start at multiples of `width`), and per model and kind if asked;
        only of `models` and `kinds` when given. Ordered by bucket, then model, then kind."""
        where = "owner = :owner AND minute >= :start AND minute < :end"
        params: dict[str, Any] = {"owner": owner, "start": start, "end": end, "width": width}
        if models:
            where, params["models"] = where + " AND model IN :models", list(models)
        if kinds:
            where, params["kinds"] = where + " AND kind IN :kinds", list(kinds)
        keys = ["(minute / :width) * :width AS bucket"] + (["model"] if by_model else []) + (["kind"] if by_kind else [])
        # Grouped by position: the bucket's expression carries a parameter, written once.
        positions = ", ".join(str(i + 1) for i in range(len(keys)))
        sums = ", ".join(f"SUM({c}) AS {c}" for c in _COUNTS)
        sql = (f"SELECT {', '.join(keys)}, {sums} FROM usage_counts WHERE {where} "
               f"GROUP BY {positions} ORDER BY {positions}")
        with self._read() as conn:
            rows = self._rows(conn, sql, **params)
        return [UsageRow(bucket=int(r["bucket"]), model=r.get("model"), kind=r.get("kind"),
                         counts=UsageCounts(**{c: int(r[c]) for c in _COUNTS})) for r in rows]

    def models_used(self, owner: str, models: Sequence[str]) -> set[str]:
        """Which of `models` `owner` ever used."""
        with self._read() as conn:
            rows = self._rows(conn, "SELECT DISTINCT model FROM usage_counts WHERE owner = :owner AND model IN :models",
                              owner=owner, models=list(models))
        return {r["model"] for r in rows}

    def tokens_used(self, owners: Sequence[str], since: int) -> dict[str, int]:
        """The tokens (read, written, trained) each of `owners` used from `since` on."""
        if not owners:
            return {}
        with self._read() as conn:
            rows = self._rows(conn, "SELECT owner, SUM(prompt_tokens + completion_tokens + trained_tokens) AS tokens "
                                    "FROM usage_counts WHERE owner IN :owners AND minute >= :since GROUP BY owner",
                              owners=list(owners), since=since)
        used = {owner: 0 for owner in owners}
        used.update({r["owner"]: int(r["tokens"]) for r in rows})
        return used

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
