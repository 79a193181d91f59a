"""Pure ASGI middleware (streaming-safe, no per-request task): request ids.

Written as raw ASGI rather than `BaseHTTPMiddleware` so streamed responses pass
through untouched and a client disconnect reaches the handler. The id is also set as the
`reference_server.logs.request_id` context variable, so every log line of the request names it.
"""

from __future__ import annotations

import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from reference_server import logs
from reference_server.http.middleware._scope import header


class RequestIdMiddleware:
    """Gives every request an id (the client's `x-request-id` if sane, else a new one)
    and sends it back on every response, errors included."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = header(scope, b"x-request-id")
        request_id = incoming if incoming and len(incoming) <= 128 and incoming.isprintable() else None
        request_id = request_id or f"req_{uuid.uuid4().hex}"
        scope.setdefault("state", {})["request_id"] = request_id
        raw_id = request_id.encode("latin-1", "replace")

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", raw_id))
                message["headers"] = headers
            await send(message)

        token = logs.request_id.set(request_id)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            logs.request_id.reset(token)
