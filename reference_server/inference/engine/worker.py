"""`EngineThread`: the thread skeleton both engines share.

Each engine runs its model on threads of its own (one for generation; one per stream for
embeddings, see `_workers`), woken through a condition variable; the event loop only submits
work and waits. Starting takes the torch thread count in effect on the caller's thread
(torch's setting is per thread) and shares it among the workers; stopping sets `_stopping`
under the condition, wakes the engine and joins its threads without blocking the loop.
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
        self._threads: list[threading.Thread] = []
        self._stopping = False

    @property
    def accepting(self) -> bool:
        """Started and not stopping: new work may be submitted."""
        return bool(self._threads) and not self._stopping

    def start(self) -> None:
        """Start the engine's threads (sharing the torch thread count in effect now)."""
        if self._threads:
            return
        threads = torch.get_num_threads()
        workers = max(1, self._workers(threads))
        names = [self._name] if workers == 1 else [f"{self._name}-{i}" for i in range(workers)]
        self._threads = [threading.Thread(target=self._run, args=(max(1, threads // workers),), name=name,
                                          daemon=True) for name in names]
        for thread in self._threads:
            thread.start()

    async def stop(self) -> None:
        """Ask the engine's threads to stop (see each engine's `_run` for what happens to the work
        in flight) and wait for them to exit."""
        if not self._threads:
            return
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        for thread in self._threads:
            await asyncio.to_thread(thread.join)

    def _workers(self, threads: int) -> int:
        """How many threads run `_run` (each with `threads // workers` torch threads)."""
        return 1

    @abstractmethod
    def _run(self, threads: int) -> None:
        """A worker thread's body: `torch.set_num_threads(threads)`, then serve until stopping."""
