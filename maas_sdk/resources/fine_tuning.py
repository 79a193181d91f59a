"""`client.fine_tuning.jobs`: training jobs, their events and checkpoints, and waiting for them.

Jobs come back as `BoundFineTuningJob` (sync client) or `AsyncBoundFineTuningJob`
(async client): plain `FineTuningJob`s that remember the client that fetched them,
so `job.wait()` / `await job.wait()` can poll it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar

from pydantic import PrivateAttr
from typing_extensions import Unpack

from maas_sdk import _endpoints as endpoints
from maas_sdk._core import Call
from maas_sdk._pagination import AsyncPager, CursorPage, Pager
from maas_sdk._types import FineTuningParams, RequestOptions
from maas_sdk._waiting import JobWatch
from maas_sdk.protocol import FineTuningCheckpointList, FineTuningEvent, FineTuningEventList, FineTuningJob
from maas_sdk.resources._base import AsyncResource, SyncResource

if TYPE_CHECKING:
    from maas_sdk._client import AsyncMaaS, MaaS

__all__ = [
    "AsyncBoundFineTuningJob",
    "AsyncFineTuning",
    "AsyncFineTuningJobs",
    "BoundFineTuningJob",
    "FineTuning",
    "FineTuningJobs",
]

_UNBOUND = "this job was not fetched through a client; use client.fine_tuning.jobs.wait(job.id)"


class BoundFineTuningJob(FineTuningJob):
    """A `FineTuningJob` fetched by a `MaaS` client, which can wait for its own end."""

    _client: MaaS | None = PrivateAttr(default=None)

    def wait(
        self, *, poll_interval: float = 2.0, timeout: float | None = None, progress: bool = False
    ) -> BoundFineTuningJob:
        """See `client.fine_tuning.jobs.wait()`."""
        if self._client is None:
            raise RuntimeError(_UNBOUND)
        jobs = self._client.fine_tuning.jobs
        return jobs.wait(self.id, poll_interval=poll_interval, timeout=timeout, progress=progress)


class AsyncBoundFineTuningJob(FineTuningJob):
    """A `FineTuningJob` fetched by an `AsyncMaaS` client, which can wait for its own end."""

    _client: AsyncMaaS | None = PrivateAttr(default=None)

    async def wait(
        self, *, poll_interval: float = 2.0, timeout: float | None = None, progress: bool = False
    ) -> AsyncBoundFineTuningJob:
        """See `client.fine_tuning.jobs.wait()`."""
        if self._client is None:
            raise RuntimeError(_UNBOUND)
        jobs = self._client.fine_tuning.jobs
        return await jobs.wait(self.id, poll_interval=poll_interval, timeout=timeout, progress=progress)


JobT = TypeVar("JobT", BoundFineTuningJob, AsyncBoundFineTuningJob)


def _bind(job: JobT, client: object) -> JobT:
    job._client = client  # type: ignore[assignment]
    return job


class FineTuningJobs(SyncResource):
    def create(self, *, model: str, training_file: str, **params: Unpack[FineTuningParams]) -> BoundFineTuningJob:
        """Start training `model` on an uploaded file; `method={"type": "lora"}` trains adapters."""
        return self._job(endpoints.create_job(BoundFineTuningJob, model=model, training_file=training_file, **params))

    def list(
        self, *, limit: int | None = None, after: str | None = None, **options: Unpack[RequestOptions]
    ) -> Pager[BoundFineTuningJob]:
        """Every job, fetched `limit` per page as iteration goes, starting after the job id `after`."""

        def page(cursor: str | None) -> CursorPage[BoundFineTuningJob]:
            call = endpoints.list_jobs(CursorPage[BoundFineTuningJob], limit=limit, after=cursor, options=options)
            result = self._client._request(call)
            for job in result.data:
                _bind(job, self._client)
            return result

        return Pager(page, after)

    def retrieve(self, job_id: str, **options: Unpack[RequestOptions]) -> BoundFineTuningJob:
        return self._job(endpoints.retrieve_job(BoundFineTuningJob, job_id, options))

    def cancel(self, job_id: str, **options: Unpack[RequestOptions]) -> BoundFineTuningJob:
        return self._job(endpoints.cancel_job(BoundFineTuningJob, job_id, options))

    def events(
        self, job_id: str, *, limit: int | None = None, after: str | None = None,
        **options: Unpack[RequestOptions],
    ) -> Pager[FineTuningEvent]:
        """Every event of a job, fetched `limit` per page as iteration goes."""

        def page(cursor: str | None) -> FineTuningEventList:
            return self._client._request(endpoints.job_events(job_id, limit=limit, after=cursor, options=options))

        return Pager(page, after)

    def checkpoints(self, job_id: str, **options: Unpack[RequestOptions]) -> FineTuningCheckpointList:
        return self._client._request(endpoints.job_checkpoints(job_id, options))

    def wait(
        self, job_id: str, *, poll_interval: float = 2.0, timeout: float | None = None, progress: bool = False
    ) -> BoundFineTuningJob:
        """Poll the job every `poll_interval` seconds until it ends, and return its final state.

        Raises `FineTuningJobFailed` (`.job`) if it failed or was cancelled, and
        `WaitTimeoutError` (a `TimeoutError`) if it is still running after `timeout`
        seconds. `progress=True` shows a tqdm bar of its steps (needs tqdm).
        """
        clock = self._client._settings.clock
        with JobWatch(job_id, poll_interval=poll_interval, timeout=timeout, progress=progress, clock=clock) as watch:
            job = self.retrieve(job_id)
            while not watch.finished(job):
                clock.sleep(watch.delay())
                job = self.retrieve(job_id)
        return job

    def _job(self, call: Call[BoundFineTuningJob]) -> BoundFineTuningJob:
        return _bind(self._client._request(call), self._client)


class AsyncFineTuningJobs(AsyncResource):
    async def create(
        self, *, model: str, training_file: str, **params: Unpack[FineTuningParams]
    ) -> AsyncBoundFineTuningJob:
        """Start training `model` on an uploaded file; `method={"type": "lora"}` trains adapters."""
        call = endpoints.create_job(AsyncBoundFineTuningJob, model=model, training_file=training_file, **params)
        return await self._job(call)

    def list(
        self, *, limit: int | None = None, after: str | None = None, **options: Unpack[RequestOptions]
    ) -> AsyncPager[AsyncBoundFineTuningJob]:
        """Every job, fetched `limit` per page as iteration goes, starting after the job id `after`."""

        async def page(cursor: str | None) -> CursorPage[AsyncBoundFineTuningJob]:
            call = endpoints.list_jobs(CursorPage[AsyncBoundFineTuningJob], limit=limit, after=cursor, options=options)
            result = await self._client._request(call)
            for job in result.data:
                _bind(job, self._client)
            return result

        return AsyncPager(page, after)

    async def retrieve(self, job_id: str, **options: Unpack[RequestOptions]) -> AsyncBoundFineTuningJob:
        return await self._job(endpoints.retrieve_job(AsyncBoundFineTuningJob, job_id, options))

    async def cancel(self, job_id: str, **options: Unpack[RequestOptions]) -> AsyncBoundFineTuningJob:
        return await self._job(endpoints.cancel_job(AsyncBoundFineTuningJob, job_id, options))

    def events(
        self, job_id: str, *, limit: int | None = None, after: str | None = None,
        **options: Unpack[RequestOptions],
    ) -> AsyncPager[FineTuningEvent]:
        """Every event of a job, fetched `limit` per page as iteration goes."""

        async def page(cursor: str | None) -> FineTuningEventList:
            call = endpoints.job_events(job_id, limit=limit, after=cursor, options=options)
            return await self._client._request(call)

        return AsyncPager(page, after)

    async def checkpoints(self, job_id: str, **options: Unpack[RequestOptions]) -> FineTuningCheckpointList:
        return await self._client._request(endpoints.job_checkpoints(job_id, options))

    async def wait(
        self, job_id: str, *, poll_interval: float = 2.0, timeout: float | None = None, progress: bool = False
    ) -> AsyncBoundFineTuningJob:
        """Poll until the job ends and return its final state; raises as `FineTuningJobs.wait` does."""
        clock = self._client._settings.clock
        with JobWatch(job_id, poll_interval=poll_interval, timeout=timeout, progress=progress, clock=clock) as watch:
            job = await self.retrieve(job_id)
            while not watch.finished(job):
                await clock.async_sleep(watch.delay())
                job = await self.retrieve(job_id)
        return job

    async def _job(self, call: Call[AsyncBoundFineTuningJob]) -> AsyncBoundFineTuningJob:
        return _bind(await self._client._request(call), self._client)


class FineTuning(SyncResource):
    @property
    def jobs(self) -> FineTuningJobs:
        return FineTuningJobs(self._client)


class AsyncFineTuning(AsyncResource):
    @property
    def jobs(self) -> AsyncFineTuningJobs:
        return AsyncFineTuningJobs(self._client)
