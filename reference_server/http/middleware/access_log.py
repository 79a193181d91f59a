"""Pure ASGI middleware: one log line per request, written when the response ends.

`METHOD /path STATUS DURATIONms request_id`: the path without its query string, and never a
header or a body, so no key or prompt reaches the log. Streamed responses are logged when
their last chunk is sent (or the client goes away), so the duration covers the whole stream.
"""

from __future__ import annotations

import logging
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

logger = logging.getLogger("reference_server.access")


class AccessLogMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500  # what the client gets if the app fails before answering

        async def watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            request_id = scope.get("state", {}).get("request_id", "-")
            logger.info("%s %s %d %.1fms %s", scope.get("method", "-"), scope.get("path", "-"), status,
                        (time.perf_counter() - start) * 1000, request_id)
