"""Server-sent events: encoding, keep-alive comments, and error events mid-stream.

Once a stream has started its status cannot change, so a failure after the first
byte is sent as `data: {"error": {...}}` followed by `data: [DONE]`, as OpenAI-
compatible servers do; the SDK turns that event into the matching typed exception.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable

import anyio
from pydantic import BaseModel
from starlette.background import BackgroundTask
from starlette.responses import StreamingResponse

from maas_sdk.protocol import ErrorBody, ErrorDetail
from maas_sdk.protocol.vocabulary import SERVER_ERROR
from reference_server.errors import DomainError
from reference_server.http.errors import HTTPError

logger = logging.getLogger("reference_server")

DONE = b"data: [DONE]\n\n"
PING = b": ping\n\n"


def event(body: BaseModel) -> bytes:
    return b"data: " + body.model_dump_json().encode() + b"\n\n"


def named_event(name: str, body: BaseModel) -> bytes:
    """An event with an `event:` line, as the Responses API streams them."""
    return b"event: " + name.encode() + b"\ndata: " + body.model_dump_json().encode() + b"\n\n"


def error_detail(exc: BaseException) -> ErrorDetail:
    """What the client is told of a failure mid-stream (an unexpected one is logged, not described)."""
    if isinstance(exc, DomainError):
        exc = HTTPError.of(exc)
    if isinstance(exc, HTTPError):
        return exc.detail()
    logger.error("stream failed: %s", type(exc).__name__, exc_info=exc)
    return ErrorDetail(message="The server failed while streaming this response.", type=SERVER_ERROR,
                       code="internal_error")


def error_event(exc: BaseException) -> bytes:
    return event(ErrorBody(error=error_detail(exc)))


async def with_keepalive(source: AsyncIterator[bytes], interval: float, ping: bytes = PING) -> AsyncIterator[bytes]:
    """Yield `source`'s items, plus `ping` (a `: ping` comment) whenever it is silent for
    `interval` s (long prefills behind a queue), so proxies and clients do not time the stream out."""
    iterator = source.__aiter__()
    pending: asyncio.Task[bytes] | None = None
    try:
        while True:
            if pending is None:
                pending = asyncio.ensure_future(iterator.__anext__())
            done, _ = await asyncio.wait({pending}, timeout=interval)
            if not done:
                yield ping
                continue
            task, pending = pending, None
            try:
                item = task.result()
            except StopAsyncIteration:
                return
            yield item
    finally:
        # Shielded: when the stream is cancelled (client gone, shutdown), the source must still
        # unwind, and it can only be closed once the task running it has finished.
        with anyio.CancelScope(shield=True):
            if pending is not None:
                pending.cancel()
                await asyncio.wait({pending})
            aclose = getattr(iterator, "aclose", None)
            if aclose is not None:
                await aclose()


async def guarded(source: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """Append `[DONE]`; turn a failure into an error event then `[DONE]`."""
    try:
        async for item in source:
            yield item
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # noqa: BLE001 - the client must hear of any failure
        yield error_event(exc)
    yield DONE


def sse_response(source: AsyncIterator[bytes], keepalive: float, background: BackgroundTask | None = None,
                 *, ending: Callable[[AsyncIterator[bytes]], AsyncIterator[bytes]] = guarded,
                 ping: bytes = PING) -> StreamingResponse:
    """The stream of `source`'s events, ended by `ending` (OpenAI's `[DONE]` and error event by
    default; another API frames its own) and kept alive by `ping`."""
    return StreamingResponse(
        with_keepalive(ending(source), keepalive, ping),
        media_type="text/event-stream",
        headers={"cache-control": "no-cache", "x-accel-buffering": "no"},
        background=background,
    )
