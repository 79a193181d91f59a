"""One error shape for every failure: `{"error": {"message", "type", "param", "code"}}`.

Domain errors (`reference_server.errors`) raised anywhere below HTTP are mapped to their status
here, in `STATUS_OF`, and nowhere else; `HTTPError` is for the refusals only HTTP knows about
(authentication, body size, content type, timeouts). Unknown routes become 404; any
unexpected exception becomes `internal_error()`, a 500 that names no file path and shows no
stack, answered by `middleware/unhandled.py` so that its connection stays usable.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from maas_sdk.protocol import ErrorBody, ErrorDetail
from maas_sdk.protocol.vocabulary import ERROR_TYPES, INVALID_REQUEST_ERROR, SERVER_ERROR
from reference_server.errors import (
    Conflict,
    DomainError,
    Forbidden,
    InvalidRequest,
    NotFound,
    Overloaded,
    QuotaExceeded,
    StorageFull,
    Unavailable,
)

STATUS_OF: dict[type[DomainError], int] = {
    InvalidRequest: 400,
    Forbidden: 403,
    NotFound: 404,
    Conflict: 409,
    Overloaded: 429,
    QuotaExceeded: 429,
    Unavailable: 503,
    StorageFull: 507,
}


def _type_of(status: int) -> str:
    return ERROR_TYPES.get(status, SERVER_ERROR if status >= 500 else INVALID_REQUEST_ERROR)


class HTTPError(Exception):
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
        self.type = type or _type_of(status)
        self.param = param
        self.code = code
        self.headers = headers or {}

    @classmethod
    def of(cls, exc: DomainError) -> HTTPError:
        """The answer for a domain error: its status from `STATUS_OF` (by the nearest base)."""
        status = next(STATUS_OF[kind] for kind in type(exc).__mro__ if kind in STATUS_OF)
        headers = {"retry-after": str(exc.retry_after)} if exc.retry_after is not None else {}
        if not exc.retryable:
            headers["x-should-retry"] = "false"
        return cls(status, exc.message, param=exc.param, code=exc.code, headers=headers)

    def detail(self) -> ErrorDetail:
        return ErrorDetail(message=self.message, type=self.type, param=self.param, code=self.code)

    def response(self) -> Response:
        body = ErrorBody(error=self.detail()).model_dump_json()
        return Response(body, status_code=self.status, media_type="application/json", headers=self.headers)


def bad_request(message: str, param: str | None = None, code: str = "invalid_value") -> InvalidRequest:
    return InvalidRequest(message, param=param, code=code)


def not_found(message: str, param: str | None = None, code: str = "not_found") -> NotFound:
    return NotFound(message, param=param, code=code)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPError)
    return exc.response()


async def _domain_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, DomainError)
    return HTTPError.of(exc).response()


async def _starlette_error(request: Request, exc: Exception) -> Response:
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
    return HTTPError(exc.status_code, message, code=code, headers=dict(exc.headers or {})).response()


def internal_error() -> HTTPError:
    """The answer to an unexpected exception (given by `middleware/unhandled.py`): nothing about
    its cause reaches the caller, who quotes the response's `x-request-id` to find the trace in
    the server log."""
    return HTTPError(500, "The server failed to handle this request.", type=SERVER_ERROR, code="internal_error")


def install_error_handlers(app: Starlette) -> None:
    app.add_exception_handler(HTTPError, _http_error)
    app.add_exception_handler(DomainError, _domain_error)
    app.add_exception_handler(HTTPException, _starlette_error)
