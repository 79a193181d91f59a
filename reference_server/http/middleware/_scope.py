"""What the pure ASGI middlewares read from a request's scope."""

from __future__ import annotations

from starlette.types import Message, Scope, Send


def header(scope: Scope, name: bytes) -> str | None:
    """The first value of the header `name` (lower-case bytes), if sent."""
    for key, value in scope.get("headers", []):
        if key == name:
            return str(value.decode("latin-1"))
    return None


def has_body(scope: Scope) -> bool:
    """Whether the request announces a body (a non-zero Content-Length, or chunked)."""
    for name, value in scope.get("headers", []):
        if name == b"transfer-encoding":
            return True
        if name == b"content-length":
            return value.strip() not in (b"", b"0")
    return False


class ResponseProgress:
    """How far the answer to a request has got, seen through the `send` it is given."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self.started = False
        self.finished = False

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.started = True
        elif message["type"] == "http.response.body" and not message.get("more_body", False):
            self.finished = True
        await self._send(message)
