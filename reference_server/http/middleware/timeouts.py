"""Pure ASGI middleware: a request body that stops arriving is a 408, not an open connection.

Each read of the body waits at most `MAAS_BODY_TIMEOUT` seconds for the next piece, so a client
that announces a body and then stalls (or trickles nothing) is answered `408` with
`Connection: close` and its connection is freed; a slow but steady upload is never cut off.
Incomplete headers are timed out by the connection itself (`reference_server.http.connections`).
"""

from __future__ import annotations

import asyncio

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from reference_server.http.errors import HTTPError
from reference_server.http.middleware._scope import has_body


class BodyTimeoutMiddleware:
    def __init__(self, app: ASGIApp, seconds: float) -> None:
        self.app = app
        self.seconds = seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not has_body(scope):
            await self.app(scope, receive, send)
            return
        body_done = False

        async def timed_receive() -> Message:
            nonlocal body_done
            if body_done:
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), self.seconds)
            except TimeoutError:
                raise HTTPError(408, f"The request body stalled: no data for {self.seconds:g} s.", param="body",
                               code="body_timeout", headers={"connection": "close"}) from None
            if message["type"] != "http.request" or not message.get("more_body", False):
                body_done = True
            return message

        await self.app(scope, timed_receive, send)
