"""Pure ASGI middleware: every response says which replica answered it (`x-maas-replica`).

Behind a load balancer or the Ray Serve proxy, that is how a client, a test or an operator
tells the replicas apart (which one served a request, whether requests spread)."""

from __future__ import annotations

import os
import socket

from starlette.types import ASGIApp, Message, Receive, Scope, Send

REPLICA_HEADER = b"x-maas-replica"


def default_replica_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class ReplicaMiddleware:
    def __init__(self, app: ASGIApp, replica: str) -> None:
        self.app = app
        self.header = (REPLICA_HEADER, replica.encode("latin-1", "replace"))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_replica(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), self.header]
            await send(message)

        await self.app(scope, receive, send_with_replica)
