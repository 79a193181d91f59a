"""`FineTuningService`: the server side of fine-tuning: job queue, worker processes, serving results.

It is one of the app's services (started and stopped by the lifespan, after the storage service
has opened the store and swept what a crash left half-written). On start it makes every interrupted job truthful again
(`Store.recover`) and serves the models of jobs that succeeded earlier. Then a loop:

- `validating_files` jobs get their files checked (present, unchanged since upload) and are queued;
- queued jobs are started, oldest first, while fewer than `fine_tuning_concurrency` run, each
  in a worker process with `training_threads` torch threads so serving stays responsive;
- a worker that exits is reconciled with its job: when it finished training, its model is loaded
  and served and only then is the job marked succeeded (so a succeeded job's model can always be
  called); a stopped one is re-queued to resume; a crashed one is failed with the reason.

Cancelling a running job asks its worker to stop (SIGTERM; it stops between two steps) and
kills it if it has not stopped within `_STOP_GRACE` seconds. Shutdown stops every worker the
same way and re-queues its job, so the next start resumes it from the checkpoint just saved.

In a cluster one replica runs jobs (`fine_tuning_supervisor`); every other replica is a
follower: it creates and cancels jobs through the shared store only (a cancellation is a flag
the supervisor acts on at its next tick), and it learns of the models jobs produce by reading
the store every `model_sync_seconds`, so each fine-tuned model is served by every replica,
after a restart of any of them too.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Protocol

from reference_server.inference.loading import ModelSpec
from reference_server.settings import Settings
from reference_server.storage import AsyncStore, JobRecord, NewEvent
from reference_server.storage.service import StorageService
from reference_server.storage.usage import UsageRecorder
from reference_server.training import DATABASE_URL_ENV, EXIT_OK, EXIT_STOPPED, plan
from reference_server.training.checkpoints import MODEL_MARKER

# Left in a job's folder once its model is deleted.
DELETED_MARKER = "model-deleted"

logger = logging.getLogger("reference_server.fine_tuning")

_STOP_GRACE = 15.0
_TICK = 0.5
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])


@dataclass
class _Worker:
    job_id: str
    attempt: int
    process: subprocess.Popen[bytes]
    log: IO[bytes]


def _now() -> int:
    return int(time.time())


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _exit_reason(code: int) -> str:
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"the training worker was killed by {name}"
    return f"the training worker exited unexpectedly with code {code}"


class ModelHost(Protocol):
    """What fine-tuning needs of the serving side: to know when the base models are loaded, and
    to serve a finished model."""

    ready: asyncio.Event
    error: BaseException | None

    async def serve(self, spec: ModelSpec, *, parent: str, owner: str, merged_lora_on: str | None = None,
                    labels: list[str] | None = None) -> None: ...

    async def unserve(self, model_id: str) -> bool: ...


class FineTuningService:
    def __init__(self, settings: Settings, storage: StorageService, models: ModelHost, usage: UsageRecorder,
                 draining: Callable[[], bool]) -> None:
        self.settings = settings
        self.storage = storage
        self.usage = usage
        self.layout = storage.layout
        self.models = models
        self.ready = asyncio.Event()
        self._draining = draining
        self._workers: dict[str, _Worker] = {}
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._served: set[str] = set()  # succeeded jobs whose model is served here
        self._reported: set[str] = set()  # ... and those whose model could not be, logged once

    @property
    def db(self) -> AsyncStore:
        return self.storage.db

    # Lifecycle

    @property
    def supervises(self) -> bool:
        """Whether this process runs the jobs (else another replica of the cluster does)."""
        return self.settings.fine_tuning_supervisor

    async def start(self) -> None:
        if not self.supervises:
            self._task = asyncio.create_task(self._follow())
            return
        for job_id, status in await self.db.recover(self.settings.fine_tuning_max_interruptions):
            logger.warning("job %s was running when the server stopped; it is now %s", job_id, status)
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        # The loop finishes the tick in progress rather than being cancelled mid-way, so no job is
        # left marked running without a worker.
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
        async with self._lock:
            workers = list(self._workers.values())
            await asyncio.gather(*(self._stop_worker(w) for w in workers))

    def wake(self) -> None:
        """Look at the queue now rather than at the next tick (a job was created or cancelled)."""
        self._wake.set()

    async def _serve_earlier_models(self) -> None:
        """Serve the models of the jobs that succeeded before this start; then this service is ready."""
        try:
            await self._base_models_loaded()
            if not self._stopping:
                await self._serve_succeeded()
        finally:
            self.ready.set()

    async def _run(self) -> None:
        await self._serve_earlier_models()
        while not self._stopping:
            try:
                async with self._lock:
                    await self._tick()
            except Exception:
                logger.exception("fine-tuning supervisor tick failed")
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=_TICK)
            except asyncio.TimeoutError:
                pass
            self._wake.clear()

    async def _follow(self) -> None:
        """A follower's loop: serve the models of jobs that succeeded anywhere in the cluster."""
        await self._serve_earlier_models()
        while not self._stopping:
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=self.settings.model_sync_seconds)
            except asyncio.TimeoutError:
                pass
            self._wake.clear()
            if self._stopping:
                break
            try:
                await self._serve_succeeded()
            except Exception:
                logger.exception("could not read the store for new fine-tuned models")

    async def _base_models_loaded(self) -> None:
        """Wait until the configured models are loaded (or failed to): loading is not safe to run
        in two threads at once (transformers imports its classes lazily), so fine-tuned models
        are loaded after them, one at a time."""
        models = self.models
        while not models.ready.is_set() and models.error is None and not self._stopping:
            try:
                await asyncio.wait_for(models.ready.wait(), timeout=_TICK)
            except asyncio.TimeoutError:
                pass

    async def _tick(self) -> None:
        for worker in list(self._workers.values()):
            code = worker.process.poll()
            if code is not None:
                await self._reconcile(worker, code)
        if self._workers:  # cancellations asked for through another replica
            for job in await self.db.jobs_in("running"):
                flagged = self._workers.get(job.id)
                if flagged is not None and job.cancel_requested:
                    await self._stop_worker(flagged)
        for job in await self.db.jobs_in("validating_files"):
            await self._validate(job)
        if self._draining():
            return  # shutting down: start nothing that would only be stopped again
        free = self.settings.fine_tuning_concurrency - len(self._workers)
        if free > 0:
            for job in (await self.db.jobs_in("queued"))[:free]:
                await self._launch(job)

    # Job steps

    async def _validate(self, job: JobRecord) -> None:
        """Check the job's files are still there and unchanged, then queue it."""
        problem: str | None = None
        param = "training_file"
        for param, file_id in (("training_file", job.training_file), ("validation_file", job.validation_file)):
            if file_id is None:
                continue
            record = await self.db.get_file(file_id)
            path = self.layout.file_path(file_id)
            if record is None or not path.is_file():
                problem = f"The file {file_id} was deleted before training started."
            elif await asyncio.to_thread(_sha256, path) != record.sha256:
                problem = f"The contents of file {file_id} changed on disk after upload."
            if problem:
                break
        if problem is None:
            await self.db.update_job(job.id, if_status=("validating_files",), status="queued",
                                     events=[NewEvent("Files validated; the job is queued.")])
        else:
            await self.db.update_job(job.id, if_status=("validating_files",), status="failed", finished_at=_now(),
                                     error={"code": "invalid_file", "message": problem, "param": param},
                                     events=[NewEvent(problem, level="error")])

    async def _launch(self, job: JobRecord) -> None:
        attempt = job.attempt + 1
        checkpoint = await self.db.latest_checkpoint(job.id)
        message = (f"Fine-tuning resumes from the checkpoint at step {checkpoint.step_number} (attempt {attempt})."
                   if checkpoint else f"Fine-tuning started (attempt {attempt}).")
        if not await self.db.update_job(job.id, if_status=("queued",), status="running", attempt=attempt,
                                        events=[NewEvent(message)]):
            return
        threads = self.settings.training_threads
        command = [sys.executable, "-m", "reference_server.training.worker",
                   "--data-dir", str(self.layout.root.resolve()), "--job", job.id, "--attempt", str(attempt),
                   "--threads", str(threads), "--parent-pid", str(os.getpid())]
        if self.settings.device:
            command += ["--device", self.settings.device]
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
               "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
               "PYTHONPATH": os.pathsep.join(p for p in (_PACKAGE_ROOT, os.environ.get("PYTHONPATH")) if p)}
        if isinstance(self.storage.database, str):  # a database URL: in the environment, not in `ps`
            env[DATABASE_URL_ENV] = self.storage.database
        log_path = self.layout.worker_log(job.id)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        # Forked here, on the event-loop thread, not in a worker thread: Linux sends the parent-death
        # signal when the thread that forked the child exits, and this thread lives as long as the server.
        log = open(log_path, "ab")  # noqa: ASYNC230, SIM115 - closed in _reconcile, when the worker ends
        try:
            # A session of its own, so a Ctrl-C meant for the server does not reach the worker too:
            # the server's shutdown stops it (SIGTERM) after the requests in flight have drained.
            process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,  # noqa: ASYNC220
                                       stdin=subprocess.DEVNULL, env=env, start_new_session=True)
        except OSError as exc:
            log.close()
            await self._fail(job.id, attempt, f"The training worker could not be started: {exc}")
            return
        self._workers[job.id] = _Worker(job.id, attempt, process, log)
        logger.info("job %s: worker %d started (attempt %d)", job.id, process.pid, attempt)

    async def _fail(self, job_id: str, attempt: int, message: str) -> None:
        await self.db.update_job(job_id, if_status=("running",), if_attempt=attempt, status="failed",
                                 finished_at=_now(), error={"code": "training_failed", "message": message,
                                                            "param": None},
                                 events=[NewEvent(message, level="error")])

    async def _reconcile(self, worker: _Worker, code: int) -> None:
        """Bring the job in line with how its worker ended."""
        self._workers.pop(worker.job_id, None)
        worker.log.close()
        job = await self.db.get_job(worker.job_id)
        if job is None or job.status != "running" or job.attempt != worker.attempt:
            return  # the worker recorded the outcome itself (failed), or the job moved on
        if job.cancel_requested:
            await self.db.update_job(job.id, if_status=("running",), if_attempt=worker.attempt, status="cancelled",
                                     finished_at=_now(), events=[NewEvent("The job was cancelled.")])
        elif code == EXIT_OK and self._model_saved(job):
            await self._complete(job)
        elif code in (EXIT_OK, EXIT_STOPPED) or self._stopping:
            checkpoint = await self.db.latest_checkpoint(job.id)
            where = f"its checkpoint at step {checkpoint.step_number}" if checkpoint else "the beginning"
            await self.db.update_job(job.id, if_status=("running",), if_attempt=worker.attempt, status="queued",
                                     events=[NewEvent(f"Training was stopped; the job is queued to resume from "
                                                      f"{where}.", level="warn")])
        else:
            await self._fail(job.id, worker.attempt, f"Training failed: {_exit_reason(code)}.")

    def _model_saved(self, job: JobRecord) -> bool:
        """Whether this attempt of the job left a complete model folder."""
        marker = self.layout.model_dir(job.id) / MODEL_MARKER
        try:
            return bool(json.loads(marker.read_text()).get("attempt") == job.attempt)
        except (OSError, ValueError):
            return False

    async def _complete(self, job: JobRecord) -> None:
        """Serve the trained model, then mark the job succeeded (during shutdown: only mark it;
        the next start serves it)."""
        name = plan.fine_tuned_model_name(job.model, job.suffix, job.id)
        if not self._stopping:
            try:
                await self._register(job, name)
            except Exception as exc:
                logger.exception("job %s: could not serve %s", job.id, name)
                await self._fail(job.id, job.attempt, f"Training finished but the model could not be loaded for "
                                                      f"serving: {exc}")
                return
        succeeded = await self.db.update_job(
            job.id, if_status=("running",), if_attempt=job.attempt, status="succeeded", fine_tuned_model=name,
            finished_at=_now(), events=[NewEvent(f"The job has successfully completed; the new model is {name}.",
                                                 data={"fine_tuned_model": name})])
        if succeeded:  # counted once, by the replica whose update moved the job
            self.usage.record(job.owner, job.model, "fine_tuning", trained_tokens=job.trained_tokens or 0)

    async def _stop_worker(self, worker: _Worker) -> None:
        """SIGTERM, wait for the checkpoint and exit, SIGKILL after the grace period; then reconcile."""
        process = worker.process
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + _STOP_GRACE
            while process.poll() is None and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            if process.poll() is None:
                logger.warning("job %s: worker did not stop within %.0f s; killing it", worker.job_id, _STOP_GRACE)
                process.kill()
                await asyncio.to_thread(process.wait)
        await self._reconcile(worker, process.returncode)

    # Requests

    async def cancel(self, job_id: str) -> None:
        """Cancel a job that is not finished yet (a finished job is left as it is). A running job's
        worker is stopped here, or, on a replica that does not supervise, by the supervisor at its
        next tick: the answer waits (up to the worker's stop grace) until it has."""
        if not self.supervises:
            if await self._request_cancel(job_id):
                await self._until_done(job_id)
            return
        async with self._lock:
            if await self._request_cancel(job_id) and (worker := self._workers.get(job_id)) is not None:
                await self._stop_worker(worker)

    async def _request_cancel(self, job_id: str) -> bool:
        """Cancel a job not started yet; flag a running one. Whether a worker has to be stopped."""
        if await self.db.update_job(job_id, if_status=("validating_files", "queued"), status="cancelled",
                                    finished_at=_now(), events=[NewEvent("The job was cancelled.")]):
            return False
        return bool(await self.db.update_job(job_id, if_status=("running",), cancel_requested=True,
                                             events=[NewEvent("Cancellation requested; stopping the worker.")]))

    async def _until_done(self, job_id: str) -> None:
        deadline = time.monotonic() + _STOP_GRACE + 5 * _TICK
        while time.monotonic() < deadline:
            job = await self.db.get_job(job_id)
            if job is None or job.done:
                return
            await asyncio.sleep(_TICK / 2)

    def model_deleted(self, job: JobRecord) -> bool:
        return (self.layout.job_dir(job.id) / DELETED_MARKER).exists()

    async def delete_model(self, job: JobRecord) -> None:
        """Stop serving the job's model and delete its folder. The job itself stays (as OpenAI
        keeps it), with an event saying the model was deleted; a marker keeps the next start
        from looking for the folder."""
        name = job.fine_tuned_model
        if name is not None:
            await self.models.unserve(name)
        folder = self.layout.model_dir(job.id)
        await asyncio.to_thread(self.layout.job_dir(job.id).mkdir, parents=True, exist_ok=True)
        await asyncio.to_thread((self.layout.job_dir(job.id) / DELETED_MARKER).touch)
        await asyncio.to_thread(shutil.rmtree, folder, True)
        await self.db.add_event(job.id, NewEvent(f"The model {name} was deleted.", data={"deleted_model": name}))
        logger.info("job %s: deleted %s", job.id, name)

    # Serving results

    async def _serve_succeeded(self) -> None:
        for job in await self.db.jobs_in("succeeded"):
            name = job.fine_tuned_model
            if name is None:
                continue
            if self.model_deleted(job):  # through any replica: none serves it any longer
                if job.id in self._served:
                    self._served.discard(job.id)
                    await self.models.unserve(name)
                continue
            if job.id in self._served:
                continue
            try:
                if not (self.layout.model_dir(job.id) / MODEL_MARKER).is_file():
                    raise FileNotFoundError(f"{self.layout.model_dir(job.id)} is missing or incomplete")
                await self._register(job, name)
                self._served.add(job.id)
            except Exception:
                # Tried again at the next sync: on a shared volume the folder may not be visible yet.
                if job.id not in self._reported:
                    self._reported.add(job.id)
                    logger.exception("job %s succeeded but %s could not be served", job.id, name)

    async def _register(self, job: JobRecord, name: str) -> None:
        """Serve the job's model folder as `name`, with the engine for its task."""
        spec = ModelSpec(id=name, path=str(self.layout.model_dir(job.id)), task=plan.served_task(job.kind),
                         dtype=self.settings.dtype)
        merged_lora = job.kind == plan.GENERATOR and job.method.get("type") == "lora"
        labels = None
        if job.kind == plan.CLASSIFIER:
            marker = await asyncio.to_thread((self.layout.model_dir(job.id) / MODEL_MARKER).read_text)
            labels = json.loads(marker).get("labels")
        await self.models.serve(spec, parent=job.model, owner=job.owner,
                                merged_lora_on=job.base_path if merged_lora else None, labels=labels)
        logger.info("job %s: serving %s", job.id, name)
