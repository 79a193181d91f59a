"""The clients' APIs: `SyncTransport` and `AsyncTransport`, what `SyncAPI` / `AsyncAPI` name.

A transport sends a `Call` through the shared retry policy and answers in its
`ResponseMode`: the parsed result (then `then` applied), or for the raw views a
`RawResponse` / `StreamedResponse` whose `parse()` gives that result later. What the
two share (settings, mode, building the result) is written once, in `_Transport`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar, cast, overload

import httpx
from typing_extensions import Self

from maas_sdk._api import AsyncAPI, SyncAPI
from maas_sdk._clock import Clock
from maas_sdk._core import (
    Call,
    ResponseMode,
    Settings,
    StreamCall,
    build_request,
    checked,
    parse,
    transport_errors,
)
from maas_sdk._response import AsyncStreamedResponse, RawResponse, StreamedResponse
from maas_sdk._streaming import AsyncStream, ChunkT, Stream

__all__ = ["AsyncTransport", "SyncTransport"]

B = TypeVar("B")
R = TypeVar("R")
HttpT = TypeVar("HttpT", httpx.Client, httpx.AsyncClient)


class _Transport(Generic[HttpT]):
    __slots__ = ("_http", "_mode", "_settings")

    def __init__(self, settings: Settings, http: HttpT, mode: ResponseMode = "parsed") -> None:
        self._settings = settings
        self._http: HttpT = http
        self._mode: ResponseMode = mode

    @property
    def clock(self) -> Clock:
        return self._settings.clock

    def with_mode(self, mode: ResponseMode) -> Self:
        return type(self)(self._settings, self._http, mode)

    def _result(
        self, call: Call[B], response: httpx.Response, then: Callable[[B, Any], R] | None
    ) -> Callable[[], B | R]:
        """What the method returns, from the read answer; `then` gets an API that parses, even in a raw view."""
        parsing = self if self._mode == "parsed" else self.with_mode("parsed")

        def result() -> B | R:
            body = parse(call, response)
            return body if then is None else then(body, parsing)

        return result


class SyncTransport(_Transport[httpx.Client]):
    """The sync client's `SyncAPI`."""

    __slots__ = ()

    @overload
    def request(self, call: Call[B], then: None = None) -> B: ...
    @overload
    def request(self, call: Call[B], then: Callable[[B, SyncAPI], R]) -> R: ...
    def request(self, call: Call[B], then: Callable[[B, SyncAPI], R] | None = None) -> B | R:
        response = self._send(call, stream=self._mode == "streamed")
        result = self._result(call, response, then)
        if self._mode == "parsed":
            return result()

        def read_and_parse() -> B | R:
            response.read()
            return result()

        answer: object = (
            RawResponse(response, result) if self._mode == "raw" else StreamedResponse(response, read_and_parse)
        )
        return cast("B | R", answer)  # views are typed Any: they hand out this raw answer

    def stream(self, call: StreamCall[Any, ChunkT]) -> Stream[ChunkT]:
        response = self._send(call, stream=True)
        if self._mode == "parsed":
            return Stream(response, call.chunk_type)
        kind = RawResponse if self._mode == "raw" else StreamedResponse
        answer: object = kind(response, lambda: Stream(response, call.chunk_type))
        return cast("Stream[ChunkT]", answer)  # views are typed Any: they hand out this raw answer

    def _send(self, call: Call[Any], *, stream: bool) -> httpx.Response:
        settings = self._settings
        request = build_request(settings, self._http, call)
        return settings.retry.send(self._attempt, request, stream, settings.clock.sleep)

    def _attempt(self, request: httpx.Request, stream: bool) -> httpx.Response:
        with transport_errors(request):
            response = self._http.send(request, stream=stream)
            if stream and response.is_error:
                try:
                    response.read()
                finally:
                    response.close()
        return checked(response)


class AsyncTransport(_Transport[httpx.AsyncClient]):
    """The async client's `AsyncAPI`."""

    __slots__ = ()

    @overload
    async def request(self, call: Call[B], then: None = None) -> B: ...
    @overload
    async def request(self, call: Call[B], then: Callable[[B, AsyncAPI], R]) -> R: ...
    async def request(self, call: Call[B], then: Callable[[B, AsyncAPI], R] | None = None) -> B | R:
        response = await self._send(call, stream=self._mode == "streamed")
        result = self._result(call, response, then)
        if self._mode == "parsed":
            return result()

        async def read_and_parse() -> B | R:
            await response.aread()
            return result()

        answer: object = (
            RawResponse(response, result) if self._mode == "raw" else AsyncStreamedResponse(response, read_and_parse)
        )
        return cast("B | R", answer)  # views are typed Any: they hand out this raw answer

    async def stream(self, call: StreamCall[Any, ChunkT]) -> AsyncStream[ChunkT]:
        response = await self._send(call, stream=True)
        if self._mode == "parsed":
            return AsyncStream(response, call.chunk_type)

        async def unread() -> AsyncStream[ChunkT]:
            return AsyncStream(response, call.chunk_type)

        answer: object = (
            RawResponse(response, lambda: AsyncStream(response, call.chunk_type)) if self._mode == "raw"
            else AsyncStreamedResponse(response, unread)
        )
        return cast("AsyncStream[ChunkT]", answer)  # views are typed Any: they hand out this raw answer

    async def _send(self, call: Call[Any], *, stream: bool) -> httpx.Response:
        settings = self._settings
        request = build_request(settings, self._http, call)
        return await settings.retry.async_send(self._attempt, request, stream, settings.clock.async_sleep)

    async def _attempt(self, request: httpx.Request, stream: bool) -> httpx.Response:
        with transport_errors(request):
            response = await self._http.send(request, stream=stream)
            if stream and response.is_error:
                try:
                    await response.aread()
                finally:
                    await response.aclose()
        return checked(response)
