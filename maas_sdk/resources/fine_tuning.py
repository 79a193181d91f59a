"""`client.fine_tuning.jobs`: training jobs, their events and checkpoints, and waiting for them.

Jobs come back as `BoundFineTuningJob` (sync client) or `AsyncBoundFineTuningJob`
(async client): plain `FineTuningJob`s that remember the API that fetched them, so
`job.wait()` / `await job.wait()` can poll it.
"""

from __future__ import annotations

from pydantic import PrivateAttr
from typing_extensions import Self, Unpack

from maas_sdk import _endpoints as endpoints
from maas_sdk._api import AsyncAPI, SyncAPI
from maas_sdk._pagination import AsyncPager, ListBody, Page, async_pager, first_page
from maas_sdk._types import FineTuningParams, RequestOptions
from maas_sdk._waiting import JobWatch
from maas_sdk.protocol import FineTuningCheckpoint, FineTuningEvent, FineTuningJob
from maas_sdk.resources._base import AsyncResource, SyncResource

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

    _api: SyncAPI | None = PrivateAttr(default=None)

    def wait(
        self, *, poll_interval: float = 2.0, timeout: float | None = None, progress: bool = False
    ) -> BoundFineTuningJob:
        """See `client.fine_tuning.jobs.wait()`."""
        if self._api is None:
            raise RuntimeError(_UNBOUND)
        jobs = FineTuningJobs(self._api)
        return jobs.wait(self.id, poll_interval=poll_interval, timeout=timeout, progress=progress)

    def _bound(self, api: SyncAPI) -> Self:
        self._api = api
        return self


class AsyncBoundFineTuningJob(FineTuningJob):
    """A `FineTuningJob` fetched by an `AsyncMaaS` client, which can wait for its own end."""

    _api: AsyncAPI | None = PrivateAttr(default=None)

    async def wait(
        self, *, poll_interval: float = 2.0, timeout: float | None = None, progress: bool = False
    ) -> AsyncBoundFineTuningJob:
        """See `client.fine_tuning.jobs.wait()`."""
        if self._api is None:
            raise RuntimeError(_UNBOUND)
        jobs = AsyncFineTuningJobs(self._api)
        return await jobs.wait(self.id, poll_interval=poll_interval, timeout=timeout, progress=progress)

    def _bound(self, api: AsyncAPI) -> Self:
        self._api = api
        return self


class FineTuningJobs(SyncResource):
    __slots__ = ()

    def create(self, *, model: str, training_file: str, **params: Unpack[FineTuningParams]) -> BoundFineTuningJob:
        """Start training `model` on an uploaded file; `method={"type": "lora"}` trains adapters."""
        call = endpoints.create_job(BoundFineTuningJob, model=model, training_file=training_file, **params)
        return self._api.request(call, BoundFineTuningJob._bound)

    def list(
        self, *, limit: int | None = None, after: str | None = None, **options: Unpack[RequestOptions]
    ) -> Page[BoundFineTuningJob]:
        """The first page of jobs, newest first, `limit` per page, after the job id `after`;
        iterating it walks every job, fetching the next pages as iteration reaches them."""
        call = endpoints.list_jobs(ListBody[BoundFineTuningJob], limit=limit, after=after, options=options)
        return first_page(self._api, call, BoundFineTuningJob._bound)

    def retrieve(self, job_id: str, **options: Unpack[RequestOptions]) -> BoundFineTuningJob:
        return self._api.request(endpoints.retrieve_job(BoundFineTuningJob, job_id, options), BoundFineTuningJob._bound)

    def cancel(self, job_id: str, **options: Unpack[RequestOptions]) -> BoundFineTuningJob:
        return self._api.request(endpoints.cancel_job(BoundFineTuningJob, job_id, options), BoundFineTuningJob._bound)

    def events(
        self, job_id: str, *, limit: int | None = None, after: str | None = None,
        **options: Unpack[RequestOptions],
    ) -> Page[FineTuningEvent]:
        """The first page of a job's events; iterating it walks every event, `limit` per page."""
        return first_page(self._api, endpoints.job_events(job_id, limit=limit, after=after, options=options))

    def checkpoints(
        self, job_id: str, *, limit: int | None = None, after: str | None = None,
        **options: Unpack[RequestOptions],
    ) -> Page[FineTuningCheckpoint]:
        """The first page of a job's checkpoints, newest first; iterating it walks every one."""
        return first_page(self._api, endpoints.job_checkpoints(job_id, limit=limit, after=after, options=options))

    def wait(
        self, job_id: str, *, poll_interval: float = 2.0, timeout: float | None = None, progress: bool = False
    ) -> BoundFineTuningJob:
        """Poll the job every `poll_interval` seconds until it ends, and return its final state.

        Raises `FineTuningJobFailed` (`.job`) if it failed or was cancelled, and
        `WaitTimeoutError` (a `TimeoutError`) if it is still running after `timeout`
        seconds. `progress=True` shows a tqdm bar of its steps (needs tqdm).
        """
        clock = self._api.clock
        with JobWatch(job_id, poll_interval=poll_interval, timeout=timeout, progress=progress, clock=clock) as watch:
            job = self.retrieve(job_id)
            while not watch.finished(job):
                clock.sleep(watch.delay())
                job = self.retrieve(job_id)
        return job


class AsyncFineTuningJobs(AsyncResource):
    __slots__ = ()

    async def create(
        self, *, model: str, training_file: str, **params: Unpack[FineTuningParams]
    ) -> AsyncBoundFineTuningJob:
        """Start training `model` on an uploaded file; `method={"type": "lora"}` trains adapters."""
        call = endpoints.create_job(AsyncBoundFineTuningJob, model=model, training_file=training_file, **params)
        return await self._api.request(call, AsyncBoundFineTuningJob._bound)

    def list(
        self, *, limit: int | None = None, after: str | None = None, **options: Unpack[RequestOptions]
    ) -> AsyncPager[AsyncBoundFineTuningJob]:
        """Every job: `async for` it to walk them all, or `await` it for the first page; see `FineTuningJobs.list`."""
        call = endpoints.list_jobs(ListBody[AsyncBoundFineTuningJob], limit=limit, after=after, options=options)
        return async_pager(self._api, call, AsyncBoundFineTuningJob._bound)

    async def retrieve(self, job_id: str, **options: Unpack[RequestOptions]) -> AsyncBoundFineTuningJob:
        call = endpoints.retrieve_job(AsyncBoundFineTuningJob, job_id, options)
        return await self._api.request(call, AsyncBoundFineTuningJob._bound)

    async def cancel(self, job_id: str, **options: Unpack[RequestOptions]) -> AsyncBoundFineTuningJob:
        call = endpoints.cancel_job(AsyncBoundFineTuningJob, job_id, options)
        return await self._api.request(call, AsyncBoundFineTuningJob._bound)

    def events(
        self, job_id: str, *, limit: int | None = None, after: str | None = None,
        **options: Unpack[RequestOptions],
    ) -> AsyncPager[FineTuningEvent]:
        """Every event of a job: `async for` it, or `await` it for the first page."""
        return async_pager(self._api, endpoints.job_events(job_id, limit=limit, after=after, options=options))

    def checkpoints(
        self, job_id: str, *, limit: int | None = None, after: str | None = None,
        **options: Unpack[RequestOptions],
    ) -> AsyncPager[FineTuningCheckpoint]:
        """Every checkpoint of a job: `async for` it, or `await` it for the first page."""
        return async_pager(self._api, endpoints.job_checkpoints(job_id, limit=limit, after=after, options=options))

    async def wait(
        self, job_id: str, *, poll_interval: float = 2.0, timeout: float | None = None, progress: bool = False
    ) -> AsyncBoundFineTuningJob:
        """Poll until the job ends and return its final state; raises as `FineTuningJobs.wait` does."""
        clock = self._api.clock
        with JobWatch(job_id, poll_interval=poll_interval, timeout=timeout, progress=progress, clock=clock) as watch:
            job = await self.retrieve(job_id)
            while not watch.finished(job):
                await clock.async_sleep(watch.delay())
                job = await self.retrieve(job_id)
        return job


class FineTuning(SyncResource):
    __slots__ = ()

    @property
    def jobs(self) -> FineTuningJobs:
        return FineTuningJobs(self._api)


class AsyncFineTuning(AsyncResource):
    __slots__ = ()

    @property
    def jobs(self) -> AsyncFineTuningJobs:
        return AsyncFineTuningJobs(self._api)
