"""Abandoned requests stop: when a client hangs up, the work done for it is cancelled.

Once a request's body has been read, the only message left for the app to receive is the
disconnect. This middleware listens for it alongside the handler; when it comes before the
answer is complete, the handler is cancelled. What it was awaiting stops with it: a queued
embedding call is dropped before its next batch, thread work (`ThreadWork`) stops at its
next check, generation is cancelled by its handle. The request is logged and counted as 499
(nginx's "client closed request"); nobody reads that answer.

The app still sees a normal `receive`: body messages pass through while the body lasts, and
afterwards a call returns the disconnect when it happens, so route code that waits for it
(streams, `unless_disconnected`) keeps working.
"""

from __future__ import annotations

import asyncio
import logging
import time

import anyio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from reference_server.http.errors import HTTPError
from reference_server.http.middleware._scope import ResponseProgress, has_body

logger = logging.getLogger("reference_server")

_DISCONNECT: Message = {"type": "http.disconnect"}



class DisconnectMiddleware:
    """Cancels the handler of an HTTP request whose client disconnected before its answer ended."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.monotonic()
        gone = asyncio.Event()
        cancel = anyio.CancelScope()
        answer = ResponseProgress(send)
        # A bodiless request is watched from the start; the watcher consumes its empty body
        # message, so the app's first receive gets a copy.
        replay_empty = not has_body(scope)
        reading_body = not replay_empty
        watcher: asyncio.Task[None] | None = None

        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            if not answer.finished:
                gone.set()
                cancel.cancel()

        def start_watching() -> None:
            nonlocal watcher
            watcher = asyncio.get_running_loop().create_task(watch())

        async def app_receive() -> Message:
            nonlocal replay_empty, reading_body
            if replay_empty:
                replay_empty = False
                return {"type": "http.request", "body": b"", "more_body": False}
            if reading_body:
                message = await receive()
                if message["type"] == "http.disconnect":
                    reading_body = False
                    gone.set()
                elif not message.get("more_body", False):
                    reading_body = False
                    start_watching()
                return message
            await gone.wait()
            return _DISCONNECT

        if replay_empty:
            start_watching()
        try:
            with cancel:
                await self.app(scope, app_receive, answer.send)
        finally:
            if watcher is not None:
                watcher.cancel()
        if gone.is_set():
            logger.info("%s %s 499 client disconnected after %.2f s; its work was cancelled",
                        scope["method"], scope["path"], time.monotonic() - started)
            if not answer.started:
                # Nobody reads it; it gives the metrics their 499.
                await HTTPError(499, "The client closed the connection before the answer was ready.",
                               code="client_disconnected").response()(scope, receive, answer.send)
