"""What a resource needs from its client: the small typed protocol the resources are written against.

`client.models`, `client.files`, `client.fine_tuning.jobs` hold a `SyncAPI` (or an
`AsyncAPI`), never the client: they describe each operation as a `Call` and ask the
API to `request` it (or `stream` it); `clock` is the time source for polling.

`request(call, then)` parses the answer into `call.response_type` and hands it to
`then(body, api)`, which builds the method's result from it: a page that can fetch
the next page, a job that can wait for itself. `then` gets the API that parses
answers, so what it builds keeps working when the call was made through
`with_raw_response`, whose API returns the raw response instead (`then` then runs
on `.parse()`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar, overload

from typing_extensions import Protocol, Self

from maas_sdk._clock import Clock
from maas_sdk._core import Call, ResponseMode, StreamCall

if TYPE_CHECKING:
    from maas_sdk._streaming import AsyncStream, ChunkT, Stream

__all__ = ["AsyncAPI", "ResponseMode", "SyncAPI"]

B = TypeVar("B")
R = TypeVar("R")



class SyncAPI(Protocol):
    """A sync client as its resources see it."""

    @property
    def clock(self) -> Clock: ...

    @overload
    def request(self, call: Call[B], then: None = None) -> B: ...
    @overload
    def request(self, call: Call[B], then: Callable[[B, SyncAPI], R]) -> R: ...

    def stream(self, call: StreamCall[Any, ChunkT]) -> Stream[ChunkT]: ...

    def with_mode(self, mode: ResponseMode) -> Self:
        """This API answering in `mode` (what `with_raw_response` / `with_streaming_response` use)."""
        ...


class AsyncAPI(Protocol):
    """An async client as its resources see it."""

    @property
    def clock(self) -> Clock: ...

    @overload
    async def request(self, call: Call[B], then: None = None) -> B: ...
    @overload
    async def request(self, call: Call[B], then: Callable[[B, AsyncAPI], R]) -> R: ...

    async def stream(self, call: StreamCall[Any, ChunkT]) -> AsyncStream[ChunkT]: ...

    def with_mode(self, mode: ResponseMode) -> Self:
        """This API answering in `mode` (what `with_raw_response` / `with_streaming_response` use)."""
        ...
