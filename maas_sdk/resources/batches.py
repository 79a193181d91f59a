"""`client.batches`: files of requests run in the background (OpenAI's Batch API), and waiting
for them.

Batches come back as `BoundBatch` (sync client) or `AsyncBoundBatch` (async client): plain
`Batch`es that remember the API that fetched them, so `batch.wait()` / `await batch.wait()` can
poll it. `submit` writes the input file from a list of requests and starts the batch;
`results` reads its output and error files back in the requests' order.
"""

from __future__ import annotations

import asyncio
import builtins
from collections.abc import Mapping, Sequence

from pydantic import PrivateAttr
from typing_extensions import Self, Unpack

from maas_sdk import _endpoints as endpoints
from maas_sdk._api import AsyncAPI, SyncAPI
from maas_sdk._batch_files import RequestItem, custom_ids, ordered_results, requests_jsonl
from maas_sdk._pagination import AsyncPager, ListBody, Page, async_pager, first_page
from maas_sdk._types import RequestOptions
from maas_sdk._waiting import BatchWatch
from maas_sdk.protocol import Batch, BatchResult
from maas_sdk.protocol.vocabulary import BATCH_COMPLETION_WINDOW
from maas_sdk.resources._base import AsyncResource, SyncResource

__all__ = ["AsyncBatches", "AsyncBoundBatch", "Batches", "BoundBatch"]

_UNBOUND = "this batch was not fetched through a client; use client.batches.wait(batch.id)"


class BoundBatch(Batch):
    """A `Batch` fetched by a `MaaS` client, which can wait for its own end and read its results."""

    _api: SyncAPI | None = PrivateAttr(default=None)

    def wait(self, *, poll_interval: float = 2.0, timeout: float | None = None,
             progress: bool = False) -> BoundBatch:
        """See `client.batches.wait()`."""
        return Batches(self._bound_api()).wait(self.id, poll_interval=poll_interval, timeout=timeout,
                                               progress=progress)

    def results(self) -> list[BatchResult]:
        """See `client.batches.results()`."""
        return Batches(self._bound_api()).results(self.id)

    def _bound_api(self) -> SyncAPI:
        if self._api is None:
            raise RuntimeError(_UNBOUND)
        return self._api

    def _bound(self, api: SyncAPI) -> Self:
        self._api = api
        return self


class AsyncBoundBatch(Batch):
    """A `Batch` fetched by an `AsyncMaaS` client, which can wait for its own end and read its results."""

    _api: AsyncAPI | None = PrivateAttr(default=None)

    async def wait(self, *, poll_interval: float = 2.0, timeout: float | None = None,
                   progress: bool = False) -> AsyncBoundBatch:
        """See `client.batches.wait()`."""
        return await AsyncBatches(self._bound_api()).wait(self.id, poll_interval=poll_interval, timeout=timeout,
                                                          progress=progress)

    async def results(self) -> list[BatchResult]:
        """See `client.batches.results()`."""
        return await AsyncBatches(self._bound_api()).results(self.id)

    def _bound_api(self) -> AsyncAPI:
        if self._api is None:
            raise RuntimeError(_UNBOUND)
        return self._api

    def _bound(self, api: AsyncAPI) -> Self:
        self._api = api
        return self


class Batches(SyncResource):
    __slots__ = ()

    def create(
        self, *, input_file_id: str, endpoint: str, completion_window: str = BATCH_COMPLETION_WINDOW,
        metadata: Mapping[str, str] | None = None, **options: Unpack[RequestOptions],
    ) -> BoundBatch:
        """Run the requests of an uploaded file (purpose `batch`) in the background."""
        call = endpoints.create_batch(BoundBatch, input_file_id=input_file_id, endpoint=endpoint,
                                      completion_window=completion_window, metadata=metadata, options=options)
        return self._api.request(call, BoundBatch._bound)

    def submit(
        self, requests: Sequence[RequestItem], *, endpoint: str, metadata: Mapping[str, str] | None = None,
    ) -> BoundBatch:
        """Upload `requests` (bodies for `endpoint`, numbered `request-0`, ...; or whole lines with
        their own `custom_id`) as a batch file and start the batch."""
        files = endpoints.upload_file(requests_jsonl(requests, endpoint), purpose="batch",
                                      filename="batch.jsonl", options={})
        upload = self._api.request(files)
        return self.create(input_file_id=upload.id, endpoint=endpoint, metadata=metadata)

    def retrieve(self, batch_id: str, **options: Unpack[RequestOptions]) -> BoundBatch:
        return self._api.request(endpoints.retrieve_batch(BoundBatch, batch_id, options), BoundBatch._bound)

    def list(
        self, *, limit: int | None = None, after: str | None = None, **options: Unpack[RequestOptions]
    ) -> Page[BoundBatch]:
        """The first page of batches, newest first; iterating it walks every batch, `limit` per page."""
        call = endpoints.list_batches(ListBody[BoundBatch], limit=limit, after=after, options=options)
        return first_page(self._api, call, BoundBatch._bound)

    def cancel(self, batch_id: str, **options: Unpack[RequestOptions]) -> BoundBatch:
        """Stop a batch; the requests that already ran stay in its output."""
        return self._api.request(endpoints.cancel_batch(BoundBatch, batch_id, options), BoundBatch._bound)

    def wait(
        self, batch_id: str, *, poll_interval: float = 2.0, timeout: float | None = None, progress: bool = False
    ) -> BoundBatch:
        """Poll the batch every `poll_interval` seconds until it ends (`completed`, `expired` or
        `cancelled`: the requests that ran are in its output), and return its final state.

        Raises `BatchFailed` (`.batch`) if it failed, and `WaitTimeoutError` (a `TimeoutError`)
        if it is still running after `timeout` seconds. `progress=True` shows a tqdm bar of
        the requests done (needs tqdm).
        """
        clock = self._api.clock
        with BatchWatch(batch_id, poll_interval=poll_interval, timeout=timeout, progress=progress,
                        clock=clock) as watch:
            batch = self.retrieve(batch_id)
            while not watch.batch_finished(batch):
                clock.sleep(watch.delay())
                batch = self.retrieve(batch_id)
        return batch

    def results(self, batch_id: str) -> builtins.list[BatchResult]:
        """The results of an ended batch, in the order of its requests (result `i` answers request
        `i`); a request that never ran (the batch was cancelled first) has none."""
        batch = self.retrieve(batch_id)
        order = custom_ids(self._api.request(endpoints.file_content(batch.input_file_id, {})))
        files = [self._api.request(endpoints.file_content(file_id, {}))
                 for file_id in (batch.output_file_id, batch.error_file_id) if file_id]
        return ordered_results(order, files)


class AsyncBatches(AsyncResource):
    __slots__ = ()

    async def create(
        self, *, input_file_id: str, endpoint: str, completion_window: str = BATCH_COMPLETION_WINDOW,
        metadata: Mapping[str, str] | None = None, **options: Unpack[RequestOptions],
    ) -> AsyncBoundBatch:
        """Run the requests of an uploaded file (purpose `batch`) in the background."""
        call = endpoints.create_batch(AsyncBoundBatch, input_file_id=input_file_id, endpoint=endpoint,
                                      completion_window=completion_window, metadata=metadata, options=options)
        return await self._api.request(call, AsyncBoundBatch._bound)

    async def submit(
        self, requests: Sequence[RequestItem], *, endpoint: str, metadata: Mapping[str, str] | None = None,
    ) -> AsyncBoundBatch:
        """Upload `requests` as a batch file and start the batch; see `Batches.submit`."""
        data = await asyncio.to_thread(requests_jsonl, requests, endpoint)
        upload = await self._api.request(endpoints.upload_file(data, purpose="batch", filename="batch.jsonl",
                                                               options={}))
        return await self.create(input_file_id=upload.id, endpoint=endpoint, metadata=metadata)

    async def retrieve(self, batch_id: str, **options: Unpack[RequestOptions]) -> AsyncBoundBatch:
        call = endpoints.retrieve_batch(AsyncBoundBatch, batch_id, options)
        return await self._api.request(call, AsyncBoundBatch._bound)

    def list(
        self, *, limit: int | None = None, after: str | None = None, **options: Unpack[RequestOptions]
    ) -> AsyncPager[AsyncBoundBatch]:
        """Every batch: `async for` it to walk them all, or `await` it for the first page."""
        call = endpoints.list_batches(ListBody[AsyncBoundBatch], limit=limit, after=after, options=options)
        return async_pager(self._api, call, AsyncBoundBatch._bound)

    async def cancel(self, batch_id: str, **options: Unpack[RequestOptions]) -> AsyncBoundBatch:
        """Stop a batch; the requests that already ran stay in its output."""
        call = endpoints.cancel_batch(AsyncBoundBatch, batch_id, options)
        return await self._api.request(call, AsyncBoundBatch._bound)

    async def wait(
        self, batch_id: str, *, poll_interval: float = 2.0, timeout: float | None = None, progress: bool = False
    ) -> AsyncBoundBatch:
        """Poll until the batch ends and return its final state; raises as `Batches.wait` does."""
        clock = self._api.clock
        with BatchWatch(batch_id, poll_interval=poll_interval, timeout=timeout, progress=progress,
                        clock=clock) as watch:
            batch = await self.retrieve(batch_id)
            while not watch.batch_finished(batch):
                await clock.async_sleep(watch.delay())
                batch = await self.retrieve(batch_id)
        return batch

    async def results(self, batch_id: str) -> builtins.list[BatchResult]:
        """The results of an ended batch, in the order of its requests; see `Batches.results`."""
        batch = await self.retrieve(batch_id)
        order = custom_ids(await self._api.request(endpoints.file_content(batch.input_file_id, {})))
        files = [await self._api.request(endpoints.file_content(file_id, {}))
                 for file_id in (batch.output_file_id, batch.error_file_id) if file_id]
        return ordered_results(order, files)
