"""`BatchService`: the server side of the Batch API: who runs batches, and running them.

One process of a cluster runs batches: of the processes with `batch_runner` on, the one that
holds the store's `batch-runner` lease, renewed every third of `batch_lease_seconds`; if it
stops renewing (a crash, `kill -9`), another takes it over once it expires, and a restarted
server takes its own back, so whichever runs next resumes the batches where the store says
they are. Every replica answers for every batch (its routes read the store), and a
cancellation is a status the runner sees at its next look.

The runner starts a `BatchRun` for each batch not ended, oldest first, all of them sharing
`batch_concurrency` line slots. On shutdown the runs are cancelled: the lines in flight are
not recorded, and the next start runs them again (a cancelled batch's lines in flight are given
`batch_cancel_grace_seconds` to finish, `BatchRun`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable
from typing import Protocol

from maas_sdk.protocol.vocabulary import BATCH_ENDPOINTS
from reference_server.batch.lines import LineDispatcher
from reference_server.batch.runner import BatchRun
from reference_server.settings import Settings
from reference_server.storage import AsyncStore
from reference_server.storage.service import StorageService

logger = logging.getLogger("reference_server.batch")

LEASE = "batch-runner"
_TICK = 0.5
# Statuses of batches that still have work: each gets a run.
ACTIVE = ("validating", "in_progress", "finalizing", "cancelling")


class ModelsReady(Protocol):
    ready: asyncio.Event
    error: BaseException | None


class BatchService:
    def __init__(self, settings: Settings, storage: StorageService, models: ModelsReady,
                 draining: Callable[[], bool]) -> None:
        self.settings = settings
        self.storage = storage
        self.models = models
        self._draining = draining
        self._dispatch: LineDispatcher | None = None
        self._holder = f"{settings.replica or 'server'}-{uuid.uuid4().hex[:12]}"
        self._slots = asyncio.Semaphore(settings.batch_concurrency or 2 * settings.max_running)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._runs: dict[str, asyncio.Task[None]] = {}
        self._leading = False
        self._stopping = False

    @property
    def db(self) -> AsyncStore:
        return self.storage.db

    def attach(self, dispatch: LineDispatcher) -> None:
        """How lines are answered (the app's routes); a process without it runs no batches."""
        self._dispatch = dispatch

    @property
    def runs_batches(self) -> bool:
        return self.settings.batch_runner and self._dispatch is not None

    async def start(self) -> None:
        if self.runs_batches:
            self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
        await self._stop_runs()
        if self._leading:
            with contextlib.suppress(Exception):
                await self.db.release_lease(LEASE, self._holder)

    def wake(self) -> None:
        """Look at the batches now rather than at the next tick (one was created or cancelled)."""
        self._wake.set()

    async def _run(self) -> None:
        while not self._stopping and not self.models.ready.is_set() and self.models.error is None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.models.ready.wait(), timeout=_TICK)
        renewed = 0.0
        loop = asyncio.get_running_loop()
        while not self._stopping:
            try:
                if loop.time() - renewed >= self.settings.batch_lease_seconds / 3:
                    leading = await self.db.claim_lease(LEASE, self._holder, self.settings.batch_lease_seconds)
                    renewed = loop.time()
                    if leading != self._leading:
                        logger.info("batches: %s", "this process runs them" if leading else "another process runs them")
                    self._leading = leading
                    if not leading:
                        await self._stop_runs()
                if self._leading and not self._draining():
                    await self._start_runs()
            except Exception:
                logger.exception("batch runner tick failed")
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=_TICK)
            self._wake.clear()

    async def _start_runs(self) -> None:
        for batch_id in [k for k, task in self._runs.items() if task.done()]:
            self._runs.pop(batch_id)
        assert self._dispatch is not None
        for batch in await self.db.batches_in(*ACTIVE):
            if batch.id not in self._runs:
                run = BatchRun(batch, self.db, self.storage.layout, self._dispatch, self._slots, BATCH_ENDPOINTS,
                               cancel_grace=self.settings.batch_cancel_grace_seconds)
                self._runs[batch.id] = asyncio.create_task(self._guarded(run))

    @staticmethod
    async def _guarded(run: BatchRun) -> None:
        try:
            await run.run()
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("batch %s: run failed; it is tried again", run.batch.id)

    async def _stop_runs(self) -> None:
        tasks = list(self._runs.values())
        self._runs.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
