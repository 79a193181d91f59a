"""Blocking request work run in threads (tokenization, classification, zero-shot scoring,
evaluation), with a bounded queue like the engines', and stopped when its caller goes away.

`asyncio.to_thread` hands work to the default executor, whose queue has no bound: under
load, requests would pile up there and wait without limit. `ThreadWork.run` lets at most
`max_running` calls run and `max_waiting` more wait for a turn; beyond that it answers 429
at once (QueueFullError), as a full engine queue does.

Each call runs on a thread of its own that ends with it (`start_in_own_thread`), not on a pooled
one, because of how torch's CPU parallelism behaves: a thread that has run torch's parallel
operations keeps its OpenMP worker threads for as long as it lives, and once a process holds
more of those than it has cores, OpenMP stops letting idle workers spin between parallel
regions, so every region the engines run pays a wake-up. One zero-shot classification in a
pooled thread halved int8 decoding for the rest of the process's life (79 to 35 tok/s,
in-process); model loading runs the same way for the same reason.

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
        future: asyncio.Future[T] = start_in_own_thread(_flagged, stop, fn, *args)
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


def _flagged(stop: threading.Event, fn: Callable[..., T], *args: Any) -> T:
    """`fn(*args)` with `stop` as the flag `check_cancelled` reads (in the thread's own context)."""
    _stop_flag.set(stop)
    return fn(*args)


def start_in_own_thread(fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
    """Run `fn(*args)` on a new thread that ends when it returns; the future (of the running
    loop) gets its result or exception. Cancelling the future does not stop the thread."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()
    context = contextvars.copy_context()  # the request id travels, as with asyncio.to_thread

    def settle(action: Callable[[], None]) -> None:
        def run() -> None:
            if not future.done():  # the awaiting side may have been cancelled meanwhile
                action()

        try:
            loop.call_soon_threadsafe(run)
        except RuntimeError:  # the loop is closed: nobody waits any more
            pass

    def body() -> None:
        try:
            result = context.run(fn, *args)
        except BaseException as exc:  # noqa: BLE001 - handed to the awaiting side
            settle(lambda error=exc: future.set_exception(error))  # type: ignore[misc]
        else:
            settle(lambda: future.set_result(result))

    threading.Thread(target=body, name=getattr(fn, "__name__", "work"), daemon=True).start()
    return future


def _consume(future: asyncio.Future[Any]) -> None:
    """Read the outcome of work nobody waits for, so asyncio does not report it as lost."""
    if not future.cancelled():
        future.exception()
