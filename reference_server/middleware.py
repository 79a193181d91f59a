"""Pure ASGI middleware (streaming-safe, no per-request task): request ids and API keys.

Written as raw ASGI rather than `BaseHTTPMiddleware` so streamed responses pass
through untouched and a client disconnect reaches the handler.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from typing import Iterable, List, Optional, Tuple

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from reference_server.errors import APIError

OPEN_PATHS = ("/health", "/ready", "/metrics", "/openapi.json", "/docs")


class RequestIdMiddleware:
    """Gives every request an id (the client's `x-request-id` if sane, else a new one)
    and sends it back on every response, errors included."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = _header(scope, b"x-request-id")
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

        await self.app(scope, receive, send_with_id)


def key_id(key: str) -> str:
    """A stable, non-secret name for an API key (used as the owner of files and jobs)."""
    return "key_" + hashlib.sha256(key.encode()).hexdigest()[:16]


class APIKeyMiddleware:
    """Bearer-key check on `/v1` routes.

    Keys are compared as SHA-256 digests with `hmac.compare_digest` against every
    configured key, so timing reveals neither which key matched nor how much of one.
    Health, readiness and metrics stay open. With no keys configured the API is open and
    every caller is the principal `anonymous`.
    """

    def __init__(self, app: ASGIApp, keys: Iterable[str]) -> None:
        self.app = app
        self._digests: List[Tuple[bytes, str]] = [
            (hashlib.sha256(k.encode()).digest(), key_id(k)) for k in keys
        ]

    def principal_for(self, token: Optional[str]) -> Optional[str]:
        if token is None:
            return None
        digest = hashlib.sha256(token.encode()).digest()
        found: Optional[str] = None
        for candidate, name in self._digests:
            if hmac.compare_digest(candidate, digest):
                found = name
        return found

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        path: str = scope["path"]
        if not self._digests or not path.startswith("/v1"):
            state["principal"] = "anonymous"
            await self.app(scope, receive, send)
            return
        auth = _header(scope, b"authorization")
        token: Optional[str] = None
        if auth and auth[:7].lower() == "bearer ":
            token = auth[7:].strip()
        principal = self.principal_for(token)
        if principal is None:
            message = "Missing API key: send `Authorization: Bearer <key>`." if token is None else (
                "Incorrect API key provided."
            )
            response = APIError(401, message, code="invalid_api_key",
                                headers={"www-authenticate": "Bearer"}).response()
            await response(scope, receive, send)
            return
        state["principal"] = principal
        await self.app(scope, receive, send)


def _header(scope: Scope, name: bytes) -> Optional[str]:
    for key, value in scope.get("headers", []):
        if key == name:
            return str(value.decode("latin-1"))
    return None
