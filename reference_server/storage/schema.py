"""The database schema, one list of versioned migrations for both backends.

`MIGRATIONS[i]` takes a database from version i to i + 1, so a database written by an older
server is upgraded in place on start, and one written by a newer server is refused rather than
misread. Each migration is written once, in SQL both SQLite and PostgreSQL accept, with two
placeholders for the types they spell differently ({serial}: the auto-numbered key; {bigint}).

Where the version is kept: SQLite in `PRAGMA user_version` (as data directories written before
PostgreSQL support already have it), PostgreSQL in the one-row table `maas_schema`. All the
migrations run in one transaction; on PostgreSQL it first takes an advisory lock, so replicas
starting at the same time migrate one after the other, and the later ones find nothing to do.
"""

from __future__ import annotations

from sqlalchemy import Connection

_V1 = """
CREATE TABLE files (
    seq {serial},
    id TEXT NOT NULL UNIQUE,
    owner TEXT NOT NULL,
    filename TEXT NOT NULL,
    purpose TEXT NOT NULL,
    bytes {bigint} NOT NULL,
    created_at {bigint} NOT NULL,
    format TEXT NOT NULL,
    lines {bigint} NOT NULL,
    labels TEXT NOT NULL DEFAULT '[]',
    sha256 TEXT NOT NULL
);
CREATE INDEX files_by_owner ON files (owner, seq);

CREATE TABLE jobs (
    seq {serial},
    id TEXT NOT NULL UNIQUE,
    owner TEXT NOT NULL,
    created_at {bigint} NOT NULL,
    updated_at {bigint} NOT NULL,
    finished_at {bigint},
    model TEXT NOT NULL,
    base_path TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('classifier', 'generator')),
    status TEXT NOT NULL CHECK (status IN
        ('validating_files', 'queued', 'running', 'succeeded', 'failed', 'cancelled')),
    training_file TEXT NOT NULL,
    validation_file TEXT,
    hyperparameters TEXT NOT NULL,
    method TEXT NOT NULL,
    suffix TEXT,
    seed {bigint} NOT NULL,
    fine_tuned_model TEXT,
    trained_tokens {bigint},
    error TEXT,
    step INTEGER NOT NULL DEFAULT 0,
    total_steps INTEGER,
    attempt INTEGER NOT NULL DEFAULT 0,
    interruptions INTEGER NOT NULL DEFAULT 0,
    cancel_requested INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX jobs_by_owner ON jobs (owner, seq);
CREATE INDEX jobs_by_status ON jobs (status, seq);

CREATE TABLE events (
    seq {serial},
    id TEXT NOT NULL UNIQUE,
    job_id TEXT NOT NULL,
    created_at {bigint} NOT NULL,
    level TEXT NOT NULL,
    type TEXT NOT NULL,
    message TEXT NOT NULL,
    data TEXT
);
CREATE INDEX events_by_job ON events (job_id, seq);

CREATE TABLE checkpoints (
    seq {serial},
    id TEXT NOT NULL UNIQUE,
    job_id TEXT NOT NULL,
    created_at {bigint} NOT NULL,
    step_number INTEGER NOT NULL,
    path TEXT NOT NULL,
    metrics TEXT NOT NULL DEFAULT '{{}}'
);
CREATE INDEX checkpoints_by_job ON checkpoints (job_id, seq);

CREATE TABLE idempotency_keys (
    owner TEXT NOT NULL,
    key TEXT NOT NULL,
    job_id TEXT NOT NULL,
    digest TEXT NOT NULL,
    created_at {bigint} NOT NULL,
    PRIMARY KEY (owner, key)
);
"""

# Usage per API key: one row per (key, minute, model, kind), added to by upserts once a second.
_V2 = """
CREATE TABLE usage_counts (
    owner TEXT NOT NULL,
    minute {bigint} NOT NULL,
    model TEXT NOT NULL,
    kind TEXT NOT NULL,
    requests {bigint} NOT NULL DEFAULT 0,
    prompt_tokens {bigint} NOT NULL DEFAULT 0,
    completion_tokens {bigint} NOT NULL DEFAULT 0,
    inputs {bigint} NOT NULL DEFAULT 0,
    trained_tokens {bigint} NOT NULL DEFAULT 0,
    PRIMARY KEY (owner, minute, model, kind)
);
"""

# Stored responses of the Responses API: the response object as sent, the request's own input
# items (for `input_items`), and the whole conversation up to and including its output (what
# `previous_response_id` continues), each as JSON. Expired rows are swept on write.
_V3 = """
CREATE TABLE responses (
    seq {serial},
    id TEXT NOT NULL UNIQUE,
    owner TEXT NOT NULL,
    created_at {bigint} NOT NULL,
    expires_at {bigint} NOT NULL,
    body TEXT NOT NULL,
    input_items TEXT NOT NULL,
    conversation TEXT NOT NULL
);
CREATE INDEX responses_by_owner ON responses (owner, seq);
CREATE INDEX responses_by_expiry ON responses (expires_at);
"""

# The Batch API: batches, the result of each of their lines as it is written (so a restarted
# server resumes where it stopped, and never runs a recorded line twice), and the lease that
# elects the one replica running batches.
_V4 = """
CREATE TABLE batches (
    seq {serial},
    id TEXT NOT NULL UNIQUE,
    owner TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    input_file_id TEXT NOT NULL,
    completion_window TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('validating', 'failed', 'in_progress', 'finalizing', 'completed',
        'expired', 'cancelling', 'cancelled')),
    metadata TEXT,
    errors TEXT,
    output_file_id TEXT,
    error_file_id TEXT,
    created_at {bigint} NOT NULL,
    in_progress_at {bigint},
    expires_at {bigint} NOT NULL,
    finalizing_at {bigint},
    completed_at {bigint},
    failed_at {bigint},
    expired_at {bigint},
    cancelling_at {bigint},
    cancelled_at {bigint},
    total INTEGER NOT NULL DEFAULT 0,
    completed INTEGER NOT NULL DEFAULT 0,
    failed INTEGER NOT NULL DEFAULT 0,
    input_tokens {bigint} NOT NULL DEFAULT 0,
    output_tokens {bigint} NOT NULL DEFAULT 0
);
CREATE INDEX batches_by_owner ON batches (owner, seq);
CREATE INDEX batches_by_status ON batches (status, seq);

CREATE TABLE batch_results (
    batch_id TEXT NOT NULL,
    line_number INTEGER NOT NULL,
    custom_id TEXT NOT NULL,
    ok INTEGER NOT NULL,
    result TEXT NOT NULL,
    PRIMARY KEY (batch_id, line_number)
);

CREATE TABLE leases (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    expires_at DOUBLE PRECISION NOT NULL
);
"""

MIGRATIONS = [_V1, _V2, _V3, _V4]
SCHEMA_VERSION = len(MIGRATIONS)

_TYPES = {
    "sqlite": {"serial": "INTEGER PRIMARY KEY AUTOINCREMENT", "bigint": "INTEGER"},
    "postgresql": {"serial": "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY", "bigint": "BIGINT"},
}
# Any constant: the key of the advisory lock PostgreSQL replicas take to migrate one at a time.
_MIGRATION_LOCK = 0x6D616173


class SchemaTooNewError(RuntimeError):
    """The database was written by a newer server; reading it could lose data."""


def statements(version: int, dialect: str) -> list[str]:
    """The SQL statements of migration `version` (0-based) for `dialect`."""
    script = MIGRATIONS[version].format(**_TYPES[dialect])
    return [s.strip() for s in script.split(";") if s.strip()]


def _read_version(conn: Connection, dialect: str) -> int:
    if dialect == "sqlite":
        return int(conn.exec_driver_sql("PRAGMA user_version").scalar_one())
    conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_MIGRATION_LOCK})")
    conn.exec_driver_sql("CREATE TABLE IF NOT EXISTS maas_schema (version INTEGER NOT NULL)")
    found = conn.exec_driver_sql("SELECT version FROM maas_schema").scalar()
    if found is None:
        conn.exec_driver_sql("INSERT INTO maas_schema (version) VALUES (0)")
        return 0
    return int(found)


def _write_version(conn: Connection, dialect: str, version: int) -> None:
    if dialect == "sqlite":
        conn.exec_driver_sql(f"PRAGMA user_version = {int(version)}")
    else:
        conn.exec_driver_sql(f"UPDATE maas_schema SET version = {int(version)}")


def migrate(conn: Connection) -> int:
    """Bring the database to `SCHEMA_VERSION` inside the caller's (write) transaction;
    returns the version it had before."""
    dialect = conn.dialect.name
    found = _read_version(conn, dialect)
    if found > SCHEMA_VERSION:
        raise SchemaTooNewError(
            f"the database has schema version {found}; this server understands up to {SCHEMA_VERSION}"
        )
    for version in range(found, SCHEMA_VERSION):
        for statement in statements(version, dialect):
            conn.exec_driver_sql(statement)
    if found != SCHEMA_VERSION:
        _write_version(conn, dialect, SCHEMA_VERSION)
    return found
