"""`AsyncStore`: the server's non-blocking handle on the `Store`.

Every call runs on one dedicated thread that owns the SQLite connection, so requests never
block the event loop on disk writes or on the lock a training worker holds for a moment, and
the connection is never used by two threads at once.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from reference_server.storage.store import Store


class AsyncStore:
    """`await db.get_job(...)` runs `Store.get_job(...)` on the store's thread."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="maas-store")

    def __getattr__(self, name: str) -> Callable[..., Awaitable[Any]]:
        method = getattr(self.store, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._executor, functools.partial(method, *args, **kwargs))

        return call

    async def close(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._executor, self.store.close)
        self._executor.shutdown(wait=True)
