"""A full data directory, told apart from other failures.

Writing an upload or a database row on a full disk fails with `ENOSPC` (or sqlite's
"database or disk is full"). `storage_errors()` turns those into `StorageFull`, which the HTTP layer
answers with 507, so the caller learns the disk is full rather than seeing a 500.
`free_bytes` is what `/ready` and `/metrics` report: the least free space among the places
the server writes to (the data directory and its files folder, which may be separate mounts).
"""

from __future__ import annotations

import errno
import shutil
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from reference_server.errors import StorageFull
from reference_server.storage.layout import DataLayout

_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


# How databases say it: SQLite's SQLITE_FULL, PostgreSQL's disk_full (SQLSTATE 53100).
_FULL_WORDS = ("database or disk is full", "no space left on device", "disk full")


def is_full(exc: BaseException) -> bool:
    """Whether `exc`, or an error it wraps (a database driver's, under the store's), says the
    disk is full."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in _FULL_ERRNOS:
            return True
        from_database = isinstance(seen, sqlite3.Error) or type(seen).__module__.split(".")[0] in (
            "sqlalchemy", "psycopg")
        if from_database and any(words in str(seen).lower() for words in _FULL_WORDS):
            return True
        wrapped = getattr(seen, "orig", None)
        seen = wrapped if isinstance(wrapped, BaseException) else seen.__cause__
    return False


@contextmanager
def storage_errors() -> Iterator[None]:
    """Re-raise a disk-full failure of the block as `StorageFull`."""
    try:
        yield
    except Exception as exc:
        if is_full(exc):
            raise _full(str(exc)) from exc
        raise


def free_bytes(layout: DataLayout) -> int:
    """The least free space, in bytes, of the folders the server writes to."""
    folders = [folder for folder in (layout.root, layout.files_dir) if folder.is_dir()]
    return min((shutil.disk_usage(folder).free for folder in folders), default=0)


def require_space(folder: Path, needed: int) -> None:
    """StorageFull unless at least `needed` bytes are free in `folder`."""
    free = shutil.disk_usage(folder).free
    if free < needed:
        raise _full(f"{free} bytes free, {needed} needed")


def _full(detail: str) -> StorageFull:
    return StorageFull(f"The server's data directory is full ({detail}); nothing was stored. Retry once "
                       "space has been freed.")
