"""`StorageService`: the data directory and its database, opened once for the whole server.

The database is the data directory's SQLite file unless `MAAS_DATABASE_URL` names a shared
PostgreSQL server; file contents and model folders are always under the data directory, which
every replica of a cluster mounts (`MAAS_DATA_DIR`).

Files, fine-tuning and evaluation all read the same store; this service owns its lifetime
(open, sweep the blobs an interrupted upload left, close) and answers the one question every
route asks of it: "the file this caller owns".
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from reference_server.errors import InvalidRequest, NotFound
from reference_server.storage import blobs, ids
from reference_server.storage.async_store import AsyncStore
from reference_server.storage.layout import DataLayout
from reference_server.storage.records import FileRecord
from reference_server.storage.store import Store

logger = logging.getLogger("reference_server")

# An unrecorded file younger than this may be an upload in flight on another replica.
SWEEP_GRACE_SECONDS = 120.0


class StorageService:
    def __init__(self, layout: DataLayout, database_url: str | None = None, max_uploads: int = 4) -> None:
        self.layout = layout
        # Where the store is: a database URL (shared by replicas), else the data directory's SQLite file.
        self.database: Path | str = database_url or layout.db_path
        # Uploads received at the same time: each spools to disk, so this bounds disk traffic
        # and file handles, not only memory.
        self.upload_slots = asyncio.Semaphore(max_uploads)
        self._db: AsyncStore | None = None

    @property
    def db(self) -> AsyncStore:
        if self._db is None:
            raise RuntimeError("the storage service has not started")
        return self._db

    async def start(self) -> None:
        await asyncio.to_thread(self.layout.create)
        self._db = AsyncStore(await asyncio.to_thread(Store, self.database))
        removed = await asyncio.to_thread(blobs.sweep, self.layout, await self.db.file_ids(), SWEEP_GRACE_SECONDS)
        if removed:
            logger.warning("removed %d unrecorded file(s) left by an interrupted upload", len(removed))

    async def stop(self) -> None:
        if self._db is not None:
            await self._db.close()
            self._db = None

    async def owned_file(self, owner: str, file_id: str, param: str = "file_id") -> FileRecord:
        """The file `file_id` of `owner`. Anyone else's file, an unknown or a malformed id are the
        same answer: 404 when the id is the resource asked for (`param="file_id"`, the path), 400
        naming `param` when a request body refers to it."""
        record: FileRecord | None = None
        if ids.is_valid(ids.FILE, file_id):
            record = await self.db.get_file(file_id, owner)
        if record is None:
            error = NotFound if param == "file_id" else InvalidRequest
            raise error(f"No such file: {file_id}", param=param, code="file_not_found")
        return record
