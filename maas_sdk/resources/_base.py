"""Base classes of the resource namespaces (`client.models`, `client.files`, ...).

A resource holds only its client's API (the `SyncAPI` / `AsyncAPI` protocol), never the
client: clients make a new one on each attribute access (it is two words of memory),
so a client and its copies hold no reference cycles. `with_raw_response` and
`with_streaming_response` come from `Viewable`: the same resource over the API in
another mode.
"""

from __future__ import annotations

from typing_extensions import Self

from maas_sdk._api import AsyncAPI, SyncAPI
from maas_sdk._core import ResponseMode
from maas_sdk._response import AsyncResponseContextManager, ResponseContextManager, Viewable

__all__ = ["AsyncResource", "SyncResource"]


class SyncResource(Viewable):
    __slots__ = ("_api",)
    _context_manager = ResponseContextManager

    def __init__(self, api: SyncAPI) -> None:
        self._api = api

    def _viewed(self, mode: ResponseMode) -> Self:
        return type(self)(self._api.with_mode(mode))


class AsyncResource(Viewable):
    __slots__ = ("_api",)
    _context_manager = AsyncResponseContextManager

    def __init__(self, api: AsyncAPI) -> None:
        self._api = api

    def _viewed(self, mode: ResponseMode) -> Self:
        return type(self)(self._api.with_mode(mode))
