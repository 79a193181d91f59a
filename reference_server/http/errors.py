"""One error shape for every failure: `{"error": {"message", "type", "param", "code"}}`.

Handlers raise `APIError`; the exception handlers installed by `install_error_handlers`
render it, turn the engines' refusals into 429 (queue full) and 503 (stopping) with
`Retry-After`, unknown routes into 404 and any unexpected exception into a 500 that names
no file path and shows no stack.
"""

from __future__ import annotations

import logging

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from maas_sdk.protocol import ErrorBody, ErrorDetail
from reference_server.inference.engine.errors import EngineStoppedError, QueueFullError
from reference_server.inference.structured.errors import ConstraintError

logger = logging.getLogger("reference_server")

_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    409: "conflict_error",
    413: "request_too_large",
    415: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    503: "overloaded_error",
}


class APIError(Exception):
    """An error answer: status, message, and the parameter it concerns."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str | None = None,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type or _TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
        self.param = param
        self.code = code
        self.headers = headers or {}

    def detail(self) -> ErrorDetail:
        return ErrorDetail(message=self.message, type=self.type, param=self.param, code=self.code)

    def response(self) -> Response:
        body = ErrorBody(error=self.detail()).model_dump_json()
        return Response(body, status_code=self.status, media_type="application/json", headers=self.headers)


def bad_request(message: str, param: str | None = None, code: str = "invalid_value") -> APIError:
    return APIError(400, message, param=param, code=code)


def not_found(message: str, param: str | None = None, code: str = "not_found") -> APIError:
    return APIError(404, message, param=param, code=code)


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, APIError)
    return exc.response()


async def _queue_full(request: Request, exc: Exception) -> Response:
    return APIError(429, f"The server is overloaded ({exc}); retry shortly.", code="overloaded",
                    headers={"retry-after": "1"}).response()


async def _engine_stopped(request: Request, exc: Exception) -> Response:
    return APIError(503, "The model is shutting down.", code="unavailable", headers={"retry-after": "5"}).response()


async def _constraint_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ConstraintError)
    return bad_request(exc.message, param=exc.param, code=exc.code).response()


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        message = f"No route for {request.method} {request.url.path}"
        code = "unknown_route"
    elif exc.status_code == 405:
        message = f"Method {request.method} is not allowed on {request.url.path}"
        code = "method_not_allowed"
    else:
        message = str(exc.detail)
        code = None
    return APIError(exc.status_code, message, code=code, headers=dict(exc.headers or {})).response()


async def _unexpected(request: Request, exc: Exception) -> Response:
    logger.exception("unhandled error on %s %s", request.method, request.url.path)
    # This handler runs outside every middleware, so it sends the request id itself.
    request_id = request.scope.get("state", {}).get("request_id")
    return JSONResponse(
        ErrorBody(
            error=ErrorDetail(message="The server failed to handle this request.", type="server_error",
                              code="internal_error")
        ).model_dump(),
        status_code=500,
        headers={"x-request-id": request_id} if request_id else None,
    )


def install_error_handlers(app: Starlette) -> None:
    app.add_exception_handler(APIError, _api_error)
    app.add_exception_handler(QueueFullError, _queue_full)
    app.add_exception_handler(EngineStoppedError, _engine_stopped)
    app.add_exception_handler(ConstraintError, _constraint_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
