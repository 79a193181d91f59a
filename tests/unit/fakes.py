"""Test doubles for the unit tests: clients over `httpx.MockTransport`, a fake clock, SSE bodies.

Nothing here opens a socket or really sleeps: the fake clock records the delays
the client asks for and advances its own time instead.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import replace
from typing import Any

import httpx

from maas_sdk import AsyncMaaS, MaaS
from maas_sdk._clock import Clock

Handler = Callable[[httpx.Request], httpx.Response]
BASE_URL = "http://maas.test/v1"
API_KEY = "sk-unit-0123456789"


class FakeClock:
    """Records requested sleeps and advances a fake monotonic time by them."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    async def async_sleep(self, seconds: float) -> None:
        self.sleep(seconds)

    def monotonic(self) -> float:
        return self.now

    def clock(self) -> Clock:
        return Clock(sleep=self.sleep, async_sleep=self.async_sleep, monotonic=self.monotonic)


def make_client(handler: Handler, clock: FakeClock | None = None, **kwargs: Any) -> MaaS:
    kwargs.setdefault("api_key", API_KEY)
    kwargs.setdefault("base_url", BASE_URL)
    client = MaaS(http_client=httpx.Client(transport=httpx.MockTransport(handler)), **kwargs)
    client._settings = replace(client._settings, clock=(clock or FakeClock()).clock())
    return client


def make_async_client(handler: Handler, clock: FakeClock | None = None, **kwargs: Any) -> AsyncMaaS:
    kwargs.setdefault("api_key", API_KEY)
    kwargs.setdefault("base_url", BASE_URL)
    client = AsyncMaaS(http_client=httpx.AsyncClient(transport=httpx.MockTransport(handler)), **kwargs)
    client._settings = replace(client._settings, clock=(clock or FakeClock()).clock())
    return client


def json_response(body: Any, status: int = 200, **headers: str) -> httpx.Response:
    return httpx.Response(status, json=body, headers={"x-request-id": "req-1", **headers})


def error_response(status: int, message: str = "nope", **detail: Any) -> httpx.Response:
    return httpx.Response(status, json={"error": {"message": message, **detail}}, headers={"x-request-id": "req-e"})


def generation(text: str = "Hello", finish_reason: str | None = "stop") -> dict[str, Any]:
    return {
        "id": "cmpl-1",
        "object": "text_completion",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "text": text, "finish_reason": finish_reason}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }


def chunk(text: str, finish_reason: str | None = None, index: int = 0) -> dict[str, Any]:
    return {
        "id": "cmpl-1",
        "object": "text_completion",
        "created": 1,
        "model": "m",
        "choices": [{"index": index, "text": text, "finish_reason": finish_reason}],
    }


def sse(*payloads: Any, done: bool = True) -> bytes:
    """An SSE body: one `data:` event per payload (dicts as JSON), then `[DONE]` if asked."""
    parts = [f"data: {p if isinstance(p, str) else json.dumps(p)}\n\n" for p in payloads]
    if done:
        parts.append("data: [DONE]\n\n")
    return "".join(parts).encode()


class Body(httpx.SyncByteStream, httpx.AsyncByteStream):
    """A response body given in pieces, that may fail after them, and records being closed."""

    def __init__(self, pieces: list[bytes], error: Exception | None = None) -> None:
        self.pieces = pieces
        self.error = error
        self.closed = False
        self.pieces_read = 0

    def __iter__(self) -> Iterator[bytes]:
        for piece in self.pieces:
            self.pieces_read += 1
            yield piece
        if self.error is not None:
            raise self.error

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for piece in self.pieces:
            self.pieces_read += 1
            yield piece
        if self.error is not None:
            raise self.error

    def close(self) -> None:
        self.closed = True

    async def aclose(self) -> None:
        self.closed = True


def stream_response(body: Body, status: int = 200) -> httpx.Response:
    return httpx.Response(
        status, stream=body, headers={"content-type": "text/event-stream", "x-request-id": "req-s"}
    )
