"""The SQLite schema, versioned with `PRAGMA user_version`.

`MIGRATIONS[i]` takes a database from version i to i + 1, so a data directory written by an
older server is upgraded in place on start, and one written by a newer server is refused
rather than misread. Each migration runs in one transaction.
"""

from __future__ import annotations

import sqlite3

_V1 = """
CREATE TABLE files (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    owner TEXT NOT NULL,
    filename TEXT NOT NULL,
    purpose TEXT NOT NULL,
    bytes INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    format TEXT NOT NULL,
    lines INTEGER NOT NULL,
    labels TEXT NOT NULL DEFAULT '[]',
    sha256 TEXT NOT NULL
);
CREATE INDEX files_by_owner ON files (owner, seq);

CREATE TABLE jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    owner TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    finished_at INTEGER,
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
    seed INTEGER NOT NULL,
    fine_tuned_model TEXT,
    trained_tokens INTEGER,
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
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    job_id TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    level TEXT NOT NULL,
    type TEXT NOT NULL,
    message TEXT NOT NULL,
    data TEXT
);
CREATE INDEX events_by_job ON events (job_id, seq);

CREATE TABLE checkpoints (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    job_id TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    step_number INTEGER NOT NULL,
    path TEXT NOT NULL,
    metrics TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX checkpoints_by_job ON checkpoints (job_id, seq);

CREATE TABLE idempotency_keys (
    owner TEXT NOT NULL,
    key TEXT NOT NULL,
    job_id TEXT NOT NULL,
    digest TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (owner, key)
);
"""

MIGRATIONS = [_V1]
SCHEMA_VERSION = len(MIGRATIONS)


class SchemaTooNewError(RuntimeError):
    """The database was written by a newer server; reading it could lose data."""


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the database to `SCHEMA_VERSION`; returns the version it had before."""
    found = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if found > SCHEMA_VERSION:
        raise SchemaTooNewError(
            f"the database has schema version {found}; this server understands up to {SCHEMA_VERSION}"
        )
    for version in range(found, SCHEMA_VERSION):
        # executescript commits first, so the DDL and the version bump run as one explicit transaction.
        conn.executescript(f"BEGIN;\n{MIGRATIONS[version]}\nPRAGMA user_version = {version + 1};\nCOMMIT;")
    return found
