"""Blocking request work run in threads (tokenization, classification, zero-shot scoring,
evaluation), with a bounded queue like the engines', and stopped when its caller goes away.

`asyncio.to_thread` hands work to the default executor, whose queue has no bound: under
load, requests would pile up there and wait without limit. `ThreadWork.run` lets at most
`max_running` calls run and `max_waiting` more wait for a turn; beyond that it answers 429
at once (QueueFullError), as a full engine queue does.

A thread cannot be killed, so cancellation is cooperative: when the awaiting task is cancelled
(the client hung up, the drain ended the request), the work's stop flag is set and the work
ends at its next `check_cancelled()` (between batches), raising `WorkCancelled`. Its slot
stays taken until the thread has really finished, so cancelled work never runs beside
`max_running` new calls.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from reference_server.inference.engine.errors import QueueFullError

T = TypeVar("T")

_stop_flag: contextvars.ContextVar[threading.Event | None] = contextvars.ContextVar("stop_flag", default=None)


class WorkCancelled(Exception):
    """Raised inside cancelled thread work at its next check; nobody waits for its result."""


def check_cancelled() -> None:
    """Call between batches of long work: raises `WorkCancelled` once its caller has gone."""
    flag = _stop_flag.get()
    if flag is not None and flag.is_set():
        raise WorkCancelled


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
        stop = threading.Event()
        context = contextvars.copy_context()
        context.run(_stop_flag.set, stop)
        future = asyncio.get_running_loop().run_in_executor(None, context.run, fn, *args)
        try:
            result = await asyncio.shield(future)
        except asyncio.CancelledError:
            stop.set()
            future.add_done_callback(_consume)
            future.add_done_callback(lambda _: self._slots.release())
            raise
        except BaseException:
            self._slots.release()
            raise
        self._slots.release()
        return result


def _consume(future: asyncio.Future[Any]) -> None:
    """Read the outcome of work nobody waits for, so asyncio does not report it as lost."""
    if not future.cancelled():
        future.exception()
