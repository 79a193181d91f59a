"""`client.files`: uploaded training and evaluation data."""

from __future__ import annotations

import asyncio
from typing import Literal

from typing_extensions import Unpack

from maas_sdk import _endpoints as endpoints
from maas_sdk._pagination import AsyncPager, Page, async_pager, first_page
from maas_sdk._types import FileInput, RequestOptions
from maas_sdk.protocol import FileDeleted, FileObject
from maas_sdk.resources._base import AsyncResource, SyncResource

__all__ = ["AsyncFiles", "Files"]


class Files(SyncResource):
    __slots__ = ()

    def upload(
        self,
        file: FileInput,
        *,
        purpose: str = "fine-tune",
        filename: str | None = None,
        **options: Unpack[RequestOptions],
    ) -> FileObject:
        """Upload a file (a path, bytes or a binary file object) as multipart form data.

        `filename` defaults to the path's or file object's name ("upload.jsonl" for bytes).
        """
        return self._api.request(endpoints.upload_file(file, purpose=purpose, filename=filename, options=options))

    def list(
        self, *, purpose: str | None = None, limit: int | None = None, after: str | None = None,
        order: Literal["asc", "desc"] | None = None, **options: Unpack[RequestOptions],
    ) -> Page[FileObject]:
        """The uploaded files, newest first (`order="asc"`: oldest first); only those with `purpose`
        if given. Iterating the page walks every file, `limit` per request, after the file id `after`."""
        call = endpoints.list_files(purpose=purpose, limit=limit, after=after, order=order, options=options)
        return first_page(self._api, call)

    def retrieve(self, file_id: str, **options: Unpack[RequestOptions]) -> FileObject:
        return self._api.request(endpoints.retrieve_file(file_id, options))

    def content(self, file_id: str, **options: Unpack[RequestOptions]) -> bytes:
        """The file's bytes, as uploaded."""
        return self._api.request(endpoints.file_content(file_id, options))

    def delete(self, file_id: str, **options: Unpack[RequestOptions]) -> FileDeleted:
        return self._api.request(endpoints.delete_file(file_id, options))


class AsyncFiles(AsyncResource):
    __slots__ = ()

    async def upload(
        self,
        file: FileInput,
        *,
        purpose: str = "fine-tune",
        filename: str | None = None,
        **options: Unpack[RequestOptions],
    ) -> FileObject:
        """Upload a path, bytes or binary file object (multipart); see `Files.upload`."""
        # Reading a path is blocking file I/O: keep it off the event loop.
        call = await asyncio.to_thread(endpoints.upload_file, file, purpose=purpose, filename=filename, options=options)
        return await self._api.request(call)

    def list(
        self, *, purpose: str | None = None, limit: int | None = None, after: str | None = None,
        order: Literal["asc", "desc"] | None = None, **options: Unpack[RequestOptions],
    ) -> AsyncPager[FileObject]:
        """The uploaded files; see `Files.list`. `async for` them, or `(await ...).data`."""
        call = endpoints.list_files(purpose=purpose, limit=limit, after=after, order=order, options=options)
        return async_pager(self._api, call)

    async def retrieve(self, file_id: str, **options: Unpack[RequestOptions]) -> FileObject:
        return await self._api.request(endpoints.retrieve_file(file_id, options))

    async def content(self, file_id: str, **options: Unpack[RequestOptions]) -> bytes:
        """The file's bytes, as uploaded."""
        return await self._api.request(endpoints.file_content(file_id, options))

    async def delete(self, file_id: str, **options: Unpack[RequestOptions]) -> FileDeleted:
        return await self._api.request(endpoints.delete_file(file_id, options))
