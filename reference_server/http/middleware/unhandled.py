"""Pure ASGI middleware: an unexpected exception becomes one complete 500, and the connection
stays usable.

Starlette's own last-resort handler sends its 500 and then re-raises, so the ASGI server sees
an exception after a finished answer and drops the kept-alive connection without saying so:
the client's next request on it fails. Here the exception is logged (with its request id) and
answered, and goes no further. Only an answer that had already started and cannot be finished
is re-raised, because closing the connection is then the only honest end.
"""

from __future__ import annotations

import logging

from starlette.types import ASGIApp, Receive, Scope, Send

from reference_server.http.errors import internal_error
from reference_server.http.middleware._scope import ResponseProgress

logger = logging.getLogger("reference_server")


class UnhandledErrorMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        answer = ResponseProgress(send)
        try:
            await self.app(scope, receive, answer.send)
        except Exception:
            logger.exception("unhandled error on %s %s", scope["method"], scope["path"])
            if not answer.started:
                await internal_error().response()(scope, receive, send)
            elif not answer.finished:
                raise
