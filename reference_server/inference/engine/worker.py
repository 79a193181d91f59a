"""`EngineThread`: the thread skeleton both engines share.

Each engine runs its model on one thread of its own, woken through a condition variable; the
event loop only submits work and waits. Starting takes the torch thread count in effect on the
caller's thread (torch's setting is per thread); stopping sets `_stopping` under the condition,
wakes the engine and joins its thread without blocking the loop.
"""

from __future__ import annotations

import asyncio
import threading
from abc import ABC, abstractmethod

import torch


class EngineThread(ABC):
    def __init__(self, name: str) -> None:
        self._name = name
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stopping = False

    @property
    def accepting(self) -> bool:
        """Started and not stopping: new work may be submitted."""
        return self._thread is not None and not self._stopping

    def start(self) -> None:
        """Start the engine thread (uses the torch thread count in effect now)."""
        if self._thread is not None:
            return
        threads = torch.get_num_threads()
        self._thread = threading.Thread(target=self._run, args=(threads,), name=self._name, daemon=True)
        self._thread.start()

    async def stop(self) -> None:
        """Ask the engine thread to stop (see each engine's `_run` for what happens to the work in
        flight) and wait for it to exit."""
        thread = self._thread
        if thread is None:
            return
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        await asyncio.to_thread(thread.join)

    @abstractmethod
    def _run(self, threads: int) -> None:
        """The engine thread's body: `torch.set_num_threads(threads)`, then serve until stopping."""
