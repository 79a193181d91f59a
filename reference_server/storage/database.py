"""The database behind the store: an embedded SQLite file (the default), or a PostgreSQL server
that several replicas, on several machines, share (`MAAS_DATABASE_URL=postgresql://...`).

Both are reached through SQLAlchemy Core, so the store's queries are written once. What differs
is set up here, when the engine is made:

- SQLite: WAL mode lets readers run while a training worker writes, `synchronous=FULL` makes
  every commit survive a crash, and a write transaction starts with `BEGIN IMMEDIATE`, which
  takes the database's write lock at once, so a read-modify-write never interleaves with another.
- PostgreSQL (psycopg 3): a small connection pool, checked before use so a database restart
  costs no failed request; writers are serialised where it matters by row locks
  (`SELECT ... FOR UPDATE`) and conditional updates, in the store's queries.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url

# The execution option that marks a connection's transaction as a writer (see `Store._transaction`).
WRITE = "maas_write"


class UnsupportedDatabase(ValueError):
    """The database URL names a backend the store does not support."""


def url_of(where: Path | str) -> str:
    """`where` as a SQLAlchemy URL: a path is a SQLite file; `postgresql://` gets the psycopg 3 driver."""
    if isinstance(where, Path):
        return f"sqlite:///{where}"
    url = make_url(where)
    backend, _, driver = url.drivername.partition("+")
    if backend in ("postgresql", "postgres"):
        if driver not in ("", "psycopg"):
            raise UnsupportedDatabase(f"PostgreSQL is reached with psycopg 3, not {driver!r}")
        return url.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    if backend == "sqlite":
        return url.render_as_string(hide_password=False)
    raise UnsupportedDatabase(f"unsupported database {backend!r}: use a postgresql:// URL or a SQLite file")


def redacted(url: str) -> str:
    """The URL without its password, for logs."""
    return make_url(url).render_as_string(hide_password=True)


def create(url: str) -> Engine:
    if make_url(url).get_backend_name() == "sqlite":
        return _sqlite(url)
    return create_engine(url, pool_size=4, max_overflow=4, pool_pre_ping=True, pool_recycle=1800)


def _sqlite(url: str) -> Engine:
    engine = create_engine(url, connect_args={"timeout": 30.0, "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _configure(dbapi_connection: Any, _record: Any) -> None:
        # The driver's own transaction handling off: the `begin` hook below says how each starts.
        dbapi_connection.isolation_level = None
        for pragma in ("journal_mode=WAL", "synchronous=FULL", "foreign_keys=ON"):
            dbapi_connection.execute(f"PRAGMA {pragma}")

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get(WRITE) else "BEGIN")

    return engine
