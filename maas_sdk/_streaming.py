"""Streamed answers: `Stream[T]` (sync) and `AsyncStream[T]` (async), both fed by one `ChunkParser`.

A stream is an SSE body of JSON chunks ending with `data: [DONE]`. The parser turns
raw bytes into typed chunks and raises, instead of ending quietly, when the stream
goes wrong:

- an `{"error": {...}}` payload (or an `event: error`) raises the typed error its
  `type`/`code` names (`APIError` when it names none);
- a body that ends before `[DONE]`, or a connection that breaks mid-body, raises
  `APIConnectionError`, so a truncated answer is never mistaken for a whole one.
  One exception: when every choice has already sent its `finish_reason`, the answer
  is complete and a missing `[DONE]` (some OpenAI-compatible servers omit it) is
  tolerated.

Helpers, on both streams: `text_stream` yields only the text of the first choice,
`until_done()` reads what is left, and `get_final_completion()` reads what is left and
returns the whole answer (a `Generation` or `ChatCompletion`, as without `stream`),
assembled from every chunk (a stream keeps each chunk's JSON text for this).

A stream of the Responses API (`ResponseStreamEvent`s) is read by `_events.EventParser`
instead: named events, no `[DONE]`, the terminal event carrying the whole response, which
`get_final_response()` returns; `text_stream` yields its text deltas.

After `[DONE]` the rest of the body (normally nothing but its end) is read and
ignored, so that the connection goes back to the pool instead of being closed.
Both streams always release their connection: at the end, on `break` (when the
stream is closed or garbage collected), on an exception, and on `close()`.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, AsyncIterator, Generator, Iterator
from types import TracebackType
from typing import Any, Generic, TypeVar, Union, cast, overload

import httpx
from pydantic import ValidationError

from maas_sdk._assembly import final_chat_completion, final_generation
from maas_sdk._core import set_request_id, transport_errors
from maas_sdk._events import EventParser
from maas_sdk._exceptions import APIConnectionError, APIError, stream_error
from maas_sdk._sse import SSEDecoder
from maas_sdk.protocol import (
    ChatCompletion,
    ChatCompletionChunk,
    ChunkChatChoice,
    Generation,
    GenerationChunk,
)
from maas_sdk.protocol.responses import Response, ResponseStreamEvent

__all__ = ["AsyncStream", "ChunkParser", "Stream"]

ChunkT = TypeVar("ChunkT", bound=GenerationChunk | ChatCompletionChunk | ResponseStreamEvent)
# What a `ChunkParser` reads: chunks of choices, ending with `[DONE]`.
ChoiceChunkT = TypeVar("ChoiceChunkT", bound=GenerationChunk | ChatCompletionChunk)
Parser = Union["ChunkParser[Any]", EventParser]

_BROKEN = "The connection broke while the stream was being read"


class ChunkParser(Generic[ChoiceChunkT]):
    """Bytes in, typed chunks out; remembers whether the stream is complete."""

    __slots__ = ("_chat", "_decoder", "_finished", "_open", "_received", "_request_id", "_response", "_validate",
                 "done")

    def __init__(self, chunk_type: type[ChoiceChunkT], response: httpx.Response) -> None:
        # The validator itself: `model_validate_json` adds a Python call per chunk around it.
        self._validate = chunk_type.__pydantic_validator__.validate_json
        self._response = response
        self._request_id: str | None = response.headers.get("x-request-id")
        self._decoder = SSEDecoder()
        self.done = False
        self._open: set[int] = set()
        self._finished = False
        self._chat = issubclass(chunk_type, ChatCompletionChunk)
        self._received: list[str] = []  # each chunk's JSON, for `final_completion()`

    def feed(self, data: bytes) -> Iterator[ChoiceChunkT]:
        """The chunks these bytes complete; stops at `[DONE]` (then `done` is True, and the
        caller stops feeding)."""
        for event in self._decoder.feed(data):
            if event.data == "[DONE]":
                self.done = True
                return
            if event.event == "message":
                yield self._chunk(event.data)
            elif event.event == "error":
                raise self._error(event.data)

    def end(self) -> None:
        """The body ended without `[DONE]`: raise unless every choice had finished."""
        if self.done or (self._finished and not self._open and not self._decoder.pending):
            return
        where = "in the middle of an event" if self._decoder.pending else "before `data: [DONE]`"
        raise APIConnectionError(
            f"The stream ended {where}; the answer is incomplete", request=self._response.request
        )

    def _chunk(self, data: str) -> ChoiceChunkT:
        try:
            chunk: ChoiceChunkT = self._validate(data)
        except ValidationError:
            raise self._error(data) from None
        set_request_id(chunk, self._request_id)
        self._received.append(data)
        for choice in chunk.choices:
            if choice.finish_reason is None:
                self._open.add(choice.index)
            else:
                self._open.discard(choice.index)
                self._finished = True
        return chunk

    def _error(self, data: str) -> APIError:
        try:
            payload = json.loads(data)
        except ValueError:
            payload = None
        if isinstance(payload, dict) and ("error" in payload or payload.get("object") == "error"):
            return stream_error(payload, self._response)
        return APIError(f"Malformed chunk in stream: {data[:200]!r}", self._response.request, body=data)

    @staticmethod
    def text_of(chunk: GenerationChunk | ChatCompletionChunk) -> str:
        return first_choice_text(chunk)

    def final(self) -> Generation | ChatCompletion:
        """The whole answer the chunks make up, once the stream has been read to its end."""
        if not (self.done or (self._finished and not self._open)):
            raise RuntimeError("the stream was closed before its end: there is no whole answer to assemble")
        chunks = [json.loads(data) for data in self._received]
        final = final_chat_completion(chunks) if self._chat else final_generation(chunks)
        set_request_id(final, self._request_id)
        return final


def first_choice_text(chunk: GenerationChunk | ChatCompletionChunk) -> str:
    """The text a chunk adds to its answer's first choice ("" if none)."""
    for choice in chunk.choices:
        if choice.index == 0:
            if isinstance(choice, ChunkChatChoice):
                return choice.delta.content or ""
            return choice.text
    return ""


def parser_for(chunk_type: type[Any], response: httpx.Response) -> Parser:
    if issubclass(chunk_type, ResponseStreamEvent):
        return EventParser(response)
    return ChunkParser(chunk_type, response)


def _read(response: httpx.Response, parser: Parser) -> Generator[Any, None, None]:
    try:
        with transport_errors(response.request, _BROKEN):
            for data in response.iter_bytes():
                if not parser.done:
                    yield from parser.feed(data)
        parser.end()
    finally:
        response.close()


async def _aread(response: httpx.Response, parser: Parser) -> AsyncGenerator[Any, None]:
    body = cast(AsyncGenerator[bytes, None], response.aiter_bytes())
    try:
        with transport_errors(response.request, _BROKEN):
            async for data in body:
                if not parser.done:
                    for chunk in parser.feed(data):
                        yield chunk
        parser.end()
    finally:
        # Closed now rather than by the event loop's finalizer hook, which may run after the loop is gone.
        await body.aclose()
        await response.aclose()


class Stream(Generic[ChunkT]):
    """A streamed answer: iterate it for typed chunks.

    The connection is released when the stream is read to the end, when it fails,
    on `close()` or leaving its `with` block, and when the stream object is garbage
    collected (so `for chunk in client.generate(..., stream=True): break` releases it
    as soon as the loop is left). `response` is the httpx response; `request_id` the
    server's `x-request-id`.
    """

    def __init__(self, response: httpx.Response, chunk_type: type[ChunkT]) -> None:
        self.response = response
        self.request_id: str | None = response.headers.get("x-request-id")
        self._parser = parser_for(chunk_type, response)
        # A plain generator, not a method: it must not keep the stream alive, or dropping
        # the stream would not release the connection.
        self._iterator: Generator[ChunkT, None, None] = _read(response, self._parser)

    def __iter__(self) -> Stream[ChunkT]:
        return self

    def __next__(self) -> ChunkT:
        return self._iterator.__next__()

    @property
    def text_stream(self) -> Iterator[str]:
        """The text of the first choice (of a response: of its messages), piece by piece, as it
        arrives (empty pieces skipped)."""
        text_of = cast(Any, self._parser).text_of
        for chunk in self:
            text = text_of(chunk)
            if text:
                yield text

    def until_done(self) -> Stream[ChunkT]:
        """Read the rest of the stream (its chunks are kept for `get_final_completion()`)."""
        for _ in self:
            pass
        return self

    @overload
    def get_final_completion(self: Stream[GenerationChunk]) -> Generation: ...
    @overload
    def get_final_completion(self: Stream[ChatCompletionChunk]) -> ChatCompletion: ...
    def get_final_completion(self) -> Generation | ChatCompletion:
        """Read the rest of the stream and return the whole answer, as the call without `stream`
        would have: every choice's text (or message) whole, its logprobs, the usage if sent."""
        self.until_done()
        return cast(ChunkParser[Any], self._parser).final()

    def get_final_response(self: Stream[ResponseStreamEvent]) -> Response:
        """Read the rest of a Responses API stream and return the whole response, as the call
        without `stream` would have (the response of its terminal event)."""
        self.until_done()
        return cast(EventParser, self._parser).final()

    def close(self) -> None:
        """Stop reading and release the connection."""
        self._iterator.close()
        self.response.close()

    def __enter__(self) -> Stream[ChunkT]:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()


class AsyncStream(Generic[ChunkT]):
    """A streamed answer for `async for`. Use `async with`, or `await aclose()`, to release the
    connection when not reading it to the end.

    It has no `__del__`: closing an async response needs the event loop, which may
    already be closed when the object is collected ("Event loop is closed"). A stream
    abandoned mid-iteration is closed when Python finalizes its async generator (through
    the event loop's async-generator hooks); one never iterated keeps its connection
    until its response is collected. So prefer `async with`.
    """

    def __init__(self, response: httpx.Response, chunk_type: type[ChunkT]) -> None:
        self.response = response
        self.request_id: str | None = response.headers.get("x-request-id")
        self._parser = parser_for(chunk_type, response)
        self._iterator: AsyncGenerator[ChunkT, None] = _aread(response, self._parser)

    def __aiter__(self) -> AsyncIterator[ChunkT]:
        return self._iterator

    async def __anext__(self) -> ChunkT:
        return await self._iterator.__anext__()

    @property
    async def text_stream(self) -> AsyncIterator[str]:
        """The text of the first choice (of a response: of its messages), piece by piece, as it
        arrives (empty pieces skipped)."""
        text_of = cast(Any, self._parser).text_of
        async for chunk in self._iterator:
            text = text_of(chunk)
            if text:
                yield text

    async def until_done(self) -> AsyncStream[ChunkT]:
        """Read the rest of the stream (its chunks are kept for `get_final_completion()`)."""
        async for _ in self._iterator:
            pass
        return self

    @overload
    async def get_final_completion(self: AsyncStream[GenerationChunk]) -> Generation: ...
    @overload
    async def get_final_completion(self: AsyncStream[ChatCompletionChunk]) -> ChatCompletion: ...
    async def get_final_completion(self) -> Generation | ChatCompletion:
        """Read the rest of the stream and return the whole answer; see `Stream.get_final_completion()`."""
        await self.until_done()
        return cast(ChunkParser[Any], self._parser).final()

    async def get_final_response(self: AsyncStream[ResponseStreamEvent]) -> Response:
        """Read the rest of a Responses API stream and return the whole response; see
        `Stream.get_final_response()`."""
        await self.until_done()
        return cast(EventParser, self._parser).final()

    async def aclose(self) -> None:
        """Stop reading and release the connection."""
        await self._iterator.aclose()
        await self.response.aclose()

    async def __aenter__(self) -> AsyncStream[ChunkT]:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()
