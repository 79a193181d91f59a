"""Running one batch line through the route that serves its url, in this process.

A line's answer must be exactly what the same request would have received online, so it is
not re-implemented: the route's own handler runs on a request built from the line, with the
batch owner as its caller (that key's model allowlist and fine-tuned models apply, as they
would to its own request), and its errors are answered by the same mapping as every route's.
The per-request middleware is not in the way: the owner was authenticated when the batch was
created, a line has no client to hang up or drain, and it is not one more request against the
key's requests-per-minute window (its tokens still count against tokens-per-minute).
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Message

from maas_sdk.protocol.vocabulary import BATCH_ENDPOINTS
from reference_server import logs
from reference_server.batch.lines import LineAnswer
from reference_server.errors import DomainError
from reference_server.http.errors import HTTPError, internal_error
from reference_server.http.middleware.auth import KeyRing
from reference_server.http.routes import OPERATIONS
from reference_server.http.routing import Endpoint

logger = logging.getLogger("reference_server.batch")


class InProcessDispatcher:
    """Calls the route handlers of `app` for batch lines."""

    def __init__(self, app: Any, keys: KeyRing) -> None:
        self.app = app
        self.keys = keys
        self._endpoints: dict[str, Endpoint] = {
            op.path: op.endpoint for op in OPERATIONS if op.method == "POST" and op.path in BATCH_ENDPOINTS}

    async def __call__(self, owner: str, url: str, body: dict[str, Any], request_id: str) -> LineAnswer:
        endpoint = self._endpoints.get(url)
        caller = self.keys.caller_named(owner)
        if endpoint is None:
            return _answer(HTTPError(404, f"No route for POST {url}", code="unknown_route").response())
        if caller is None:
            return _answer(HTTPError(401, "The API key that created this batch is no longer configured.",
                                     code="invalid_api_key").response())
        if body.get("stream"):
            return _answer(HTTPError(400, "A batch request cannot stream; leave stream out or false.",
                                     param="stream").response())
        raw = json.dumps(body, ensure_ascii=False).encode("utf-8")
        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
            "path": url, "raw_path": url.encode(), "root_path": "", "query_string": b"", "path_params": {},
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(raw)).encode()),
                        (b"x-request-id", request_id.encode())],
            "client": None, "server": None, "app": self.app,
            "state": {"principal": caller.principal, "caller": caller},
        }
        sent = False

        async def receive() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": raw, "more_body": False}
            await asyncio.Event().wait()  # a batch line has no client that could hang up
            raise AssertionError("unreachable")

        token = logs.request_id.set(request_id)
        try:
            response = await endpoint(Request(scope, receive))
        except HTTPError as exc:
            response = exc.response()
        except DomainError as exc:
            response = HTTPError.of(exc).response()
        except Exception:
            logger.exception("batch line %s failed", request_id)
            response = internal_error().response()
        finally:
            logs.request_id.reset(token)
        return _answer(response)


def _answer(response: Response) -> LineAnswer:
    body = json.loads(bytes(response.body))
    retry = response.headers.get("retry-after")
    return LineAnswer(status=response.status_code, body=body,
                      retry_after=float(retry) if retry and retry.isdigit() else None)
