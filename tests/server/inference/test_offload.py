"""Blocking work in threads (`ThreadWork`): bounded, cancellable, and on threads that end with it."""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time

import pytest

from reference_server.inference.engine.errors import QueueFullError
from reference_server.inference.offload import ThreadWork, check_cancelled

_request = contextvars.ContextVar("request", default="none")


async def test_work_runs_on_a_thread_that_ends_with_it() -> None:
    """No pooled thread keeps torch's OpenMP workers alive after the work (they would make
    every engine's parallel regions slower for the rest of the process)."""
    work = ThreadWork(max_running=2, max_waiting=2)
    _request.set("req-1")
    ran: list[tuple[threading.Thread, str]] = []

    def job(x: int) -> int:
        ran.append((threading.current_thread(), _request.get()))
        return x * 2

    assert await asyncio.gather(work.run(job, 1), work.run(job, 2)) == [2, 4]
    assert all(name == "req-1" for _, name in ran)  # the caller's context travels
    assert threading.main_thread() not in [t for t, _ in ran]
    for thread, _ in ran:
        thread.join(5)
        assert not thread.is_alive()

    def fails() -> None:
        raise ValueError("bad input")

    with pytest.raises(ValueError, match="bad input"):
        await work.run(fails)


async def test_cancelled_work_stops_at_its_next_check_and_keeps_its_slot_until_then() -> None:
    work = ThreadWork(max_running=1, max_waiting=0)
    started, finished = threading.Event(), threading.Event()

    def long() -> None:
        started.set()
        try:
            while True:
                check_cancelled()
                time.sleep(0.01)
        finally:
            finished.set()

    task = asyncio.create_task(work.run(long))
    await asyncio.to_thread(started.wait, 5)
    with pytest.raises(QueueFullError):
        await work.run(lambda: None)  # the one slot is taken, no place to wait
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await asyncio.to_thread(finished.wait, 5)
    for _ in range(100):  # the slot comes back once the thread has really stopped
        if not work._slots.locked():
            break
        await asyncio.sleep(0.01)
    assert await work.run(lambda: "next") == "next"
