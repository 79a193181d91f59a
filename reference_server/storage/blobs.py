"""Uploaded file contents on disk: atomic writes, and cleanup of what a crash left behind.

A file is written under a temporary name, synced, renamed into place and only then recorded
in the database; it is deleted from the database first and from disk second. So after a crash
at any point every recorded file is complete on disk, and the only leftovers are unrecorded
files, which `sweep` removes at startup.

Replicas sharing the data directory start at any time, so a replica's sweep must not take the
upload another one is writing: `sweep` leaves what was modified in the last `older_than` seconds.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import BinaryIO

from reference_server.storage.layout import TMP_PREFIX, DataLayout

CHUNK = 1024 * 1024


def write_atomic(target: Path, data: bytes) -> None:
    _write(target, lambda handle: handle.write(data))


def write_stream(target: Path, source: BinaryIO) -> str:
    """Copy `source` (from its start) to `target` in chunks, atomically; returns its SHA-256."""
    digest = hashlib.sha256()
    source.seek(0)

    def copy(handle: BinaryIO) -> None:
        while chunk := source.read(CHUNK):
            digest.update(chunk)
            handle.write(chunk)

    _write(target, copy)
    return digest.hexdigest()


def write_lines(target: Path, lines: Iterable[str]) -> tuple[int, int, str]:
    """Write `lines` (each without its newline) to `target` as UTF-8 JSONL, atomically, as they
    come; returns (lines, bytes, SHA-256)."""
    digest = hashlib.sha256()
    count = size = 0

    def fill(handle: BinaryIO) -> None:
        nonlocal count, size
        for line in lines:
            data = line.encode("utf-8") + b"\n"
            digest.update(data)
            handle.write(data)
            count += 1
            size += len(data)

    _write(target, fill)
    return count, size, digest.hexdigest()


def _write(target: Path, fill: Callable[[BinaryIO], object]) -> None:
    """Write through `fill` under a temporary name, sync, rename into place, sync the folder.
    A failure (a full disk) leaves nothing behind."""
    tmp = target.parent / f"{TMP_PREFIX}{target.name}-{secrets.token_hex(4)}"
    try:
        with open(tmp, "wb") as handle:
            fill(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()
    fd = os.open(str(target.parent), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sweep(layout: DataLayout, known_ids: set[str], older_than: float = 0.0) -> list[str]:
    """Delete files in the files folder that no database row names and that were last modified
    more than `older_than` seconds ago; returns their names."""
    removed: list[str] = []
    cutoff = time.time() - older_than
    for entry in layout.files_dir.iterdir():
        if entry.is_file() and entry.name not in known_ids and entry.stat().st_mtime <= cutoff:
            entry.unlink()
            removed.append(entry.name)
    return removed
