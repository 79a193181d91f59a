"""Blocking model work run in threads (classification, zero-shot scoring, evaluation), with a
bounded queue like the engines'.

`asyncio.to_thread` hands work to the default executor, whose queue has no bound: under
load, requests would pile up there and wait without limit. `ThreadWork.run` lets at most
`max_running` calls run and `max_waiting` more wait for a turn; beyond that it answers 429
at once (QueueFullError), as a full engine queue does.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

from reference_server.inference.engine.errors import QueueFullError

T = TypeVar("T")


class ThreadWork:
    def __init__(self, max_running: int, max_waiting: int) -> None:
        self.max_running = max_running
        self.max_waiting = max_waiting
        self._slots = asyncio.Semaphore(max_running)
        self._waiting = 0

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn(*args)` in a thread, once a slot is free; 429 if too many calls already wait."""
        if self._slots.locked() and self._waiting >= self.max_waiting:
            raise QueueFullError(f"{self._waiting} requests are waiting")
        self._waiting += 1
        try:
            await self._slots.acquire()
        finally:
            self._waiting -= 1
        try:
            return await asyncio.to_thread(fn, *args)
        finally:
            self._slots.release()
