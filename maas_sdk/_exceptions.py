"""Every error the SDK raises, and the mapping from HTTP answers and error payloads to them.

`MaaSError` is the root, so `except MaaSError` catches everything the SDK raises on
purpose. An HTTP error answer becomes the `APIStatusError` subclass for its status;
an error payload inside a stream has no status of its own, so its `type` or `code`
picks the class instead.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import httpx

from maas_sdk.protocol.vocabulary import ERROR_TYPES, QUOTA_EXCEEDED

if TYPE_CHECKING:
    from maas_sdk.protocol import Batch, FineTuningJob

__all__ = [
    "APIConnectionError",
    "APIError",
    "APIStatusError",
    "APITimeoutError",
    "AuthenticationError",
    "BadRequestError",
    "BatchFailed",
    "ConflictError",
    "FineTuningJobFailed",
    "InternalServerError",
    "MaaSError",
    "NotFoundError",
    "PermissionDeniedError",
    "QuotaExceededError",
    "RateLimitError",
    "RequestTooLargeError",
    "UnprocessableEntityError",
    "WaitTimeoutError",
]


class MaaSError(Exception):
    """Base of every exception the SDK raises."""


class APIError(MaaSError):
    """The API could not give a usable answer.

    `request` is the request that failed (None when it never existed), `body` the
    decoded error payload (a dict, the raw text, or None).
    """

    message: str
    request: httpx.Request | None
    body: object

    def __init__(self, message: str, request: httpx.Request | None = None, *, body: object = None) -> None:
        super().__init__(message)
        self.message = message
        self.request = request
        self.body = body


class APIStatusError(APIError):
    """The server answered with an error.

    `param`, `code` and `type` come from the `{"error": {...}}` body when the server
    sent one. `status_code` is the HTTP status, or, for an error sent inside a
    stream, the status its `type` stands for.
    """

    status_code: int
    response: httpx.Response
    request_id: str | None
    param: str | None
    code: str | None
    type: str | None

    def __init__(
        self,
        message: str,
        *,
        response: httpx.Response,
        body: object,
        status_code: int | None = None,
    ) -> None:
        super().__init__(message, response.request, body=body)
        self.response = response
        self.status_code = response.status_code if status_code is None else status_code
        self.request_id = response.headers.get("x-request-id")
        detail = _error_detail(body)
        self.param = _optional_str(detail.get("param"))
        self.code = _optional_str(detail.get("code"))
        self.type = _optional_str(detail.get("type"))


class BadRequestError(APIStatusError):
    """400: the request was malformed or a parameter was invalid (see `.param`)."""


class AuthenticationError(APIStatusError):
    """401: the API key is missing or wrong."""


class PermissionDeniedError(APIStatusError):
    """403: the API key may not do this."""


class NotFoundError(APIStatusError):
    """404: no such model, file, job or route."""


class ConflictError(APIStatusError):
    """409: the resource is in a state that does not allow this (retried by default)."""


class RequestTooLargeError(APIStatusError):
    """413: the request body is larger than the server accepts."""


class UnprocessableEntityError(APIStatusError):
    """422: the request was well-formed but could not be processed."""


class RateLimitError(APIStatusError):
    """429: too many requests or tokens (retried by default, honouring `Retry-After`)."""


class QuotaExceededError(RateLimitError):
    """429 `quota_exceeded`: the API key's monthly token budget is used up. Never retried: no
    retry can succeed before the budget renews, `Retry-After` seconds later (`.retry_after`)."""

    @property
    def retry_after(self) -> float | None:
        """Seconds until the budget renews, as the server said."""
        value = self.response.headers.get("retry-after")
        try:
            return float(value) if value is not None else None
        except ValueError:
            return None


class InternalServerError(APIStatusError):
    """500 and above: the server failed or is overloaded (retried by default)."""


class APIConnectionError(APIError):
    """No HTTP answer arrived, or the connection broke while a body was being read."""

    def __init__(self, message: str = "Connection error.", *, request: httpx.Request | None = None) -> None:
        super().__init__(message, request)


class APITimeoutError(APIConnectionError):
    """The request took longer than its timeout."""

    def __init__(self, message: str = "Request timed out.", *, request: httpx.Request | None = None) -> None:
        super().__init__(message, request=request)


class FineTuningJobFailed(MaaSError):
    """A fine-tuning job being waited for ended `failed` or `cancelled`; `.job` is its final state."""

    def __init__(self, job: FineTuningJob) -> None:
        reason = f": {job.error.message}" if job.error is not None else ""
        super().__init__(f"fine-tuning job {job.id} {job.status}{reason}")
        self.job = job


class BatchFailed(MaaSError):
    """A batch being waited for ended `failed` (its input could not be run); `.batch` is its final state."""

    def __init__(self, batch: Batch) -> None:
        errors = batch.errors.data if batch.errors is not None else []
        reason = f": {errors[0].message}" if errors and errors[0].message else ""
        super().__init__(f"batch {batch.id} failed{reason}")
        self.batch = batch


class WaitTimeoutError(MaaSError, TimeoutError):
    """Waiting for a fine-tuning job or a batch took longer than asked; `.job` is the last state seen."""

    def __init__(self, job: FineTuningJob | Batch, timeout: float) -> None:
        what = "batch" if getattr(job, "object", None) == "batch" else "fine-tuning job"
        super().__init__(f"{what} {job.id} still {job.status} after {timeout:g}s")
        self.job = job
        self.timeout = timeout


_STATUS_ERRORS: dict[int, type[APIStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    413: RequestTooLargeError,
    422: UnprocessableEntityError,
    429: RateLimitError,
}

# The status each error `type` stands for, for errors that arrive without one (inside a stream);
# where several statuses share a type, the lowest wins.
_TYPE_STATUS: Mapping[str, int] = {kind: status for status, kind in reversed(ERROR_TYPES.items())}


def status_error_class(status: int) -> type[APIStatusError]:
    """The exception class for an HTTP error status."""
    if status >= 500:
        return InternalServerError
    return _STATUS_ERRORS.get(status, APIStatusError)


def status_error(response: httpx.Response) -> APIStatusError:
    """The typed exception for an error answer whose body has been read."""
    body = _decode_body(response)
    status = response.status_code
    message = _describe(f"{status} {response.reason_phrase}".rstrip(), body)
    kind = status_error_class(status)
    if kind is RateLimitError and _error_detail(body).get("code") == QUOTA_EXCEEDED:
        kind = QuotaExceededError
    return kind(message, response=response, body=body)


def stream_error(payload: Any, response: httpx.Response) -> APIError:
    """The typed exception for an `{"error": {...}}` event received inside a stream."""
    detail = _error_detail(payload)
    status = _status_of(detail)
    message = _describe("error in stream", payload)
    if status is None:
        return APIError(message, response.request, body=payload)
    return status_error_class(status)(message, response=response, body=payload, status_code=status)


def _status_of(detail: Mapping[str, Any]) -> int | None:
    code = detail.get("code")
    if (isinstance(code, int) or (isinstance(code, str) and code.isdigit())) and 400 <= int(code) <= 599:
        return int(code)
    for key in ("type", "code"):
        value = detail.get(key)
        if isinstance(value, str) and value in _TYPE_STATUS:
            return _TYPE_STATUS[value]
    return None


def _decode_body(response: httpx.Response) -> object:
    try:
        return json.loads(response.content)
    except ValueError:
        return response.text or None


def _error_detail(body: object) -> Mapping[str, Any]:
    """The `{"message", "type", "param", "code"}` mapping of an error body, or {}.

    Accepts the OpenAI shape (`{"error": {...}}`) and the flat one some
    OpenAI-compatible servers send (`{"object": "error", "message": ...}`).
    """
    if not isinstance(body, dict):
        return {}
    inner = body.get("error")
    if isinstance(inner, dict):
        return inner
    if isinstance(inner, str):
        return {"message": inner}
    return body if "message" in body else {}


def _describe(prefix: str, body: object) -> str:
    detail = _error_detail(body)
    message = detail.get("message")
    if message is None:
        text = body if isinstance(body, str) else None
        return f"{prefix}: {text}" if text else prefix
    notes = [f"{key}: {detail[key]}" for key in ("param", "code") if detail.get(key) is not None]
    suffix = f" ({', '.join(notes)})" if notes else ""
    return f"{prefix}: {message}{suffix}"


def _optional_str(value: object) -> str | None:
    return None if value is None else str(value)
