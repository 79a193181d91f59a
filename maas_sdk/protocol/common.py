"""Shapes shared by every operation: base classes, usage and the error body."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict


class ResponseModel(BaseModel):
    """Base of every response body: unknown fields are kept, not rejected.

    `request_id` is filled in by the SDK from the `x-request-id` header (by setting
    `_request_id`). It describes the call, not the data: it is not part of the JSON
    body, of equality, of copies or of pickles. It is kept in a slot rather than a
    pydantic private attribute, which would cost pydantic an extra call for every
    object it validates (about a third of the time to parse a streamed chunk).
    """

    model_config = ConfigDict(extra="allow", protected_namespaces=())

    __slots__ = ("_request_id",)
    if TYPE_CHECKING:
        _request_id: str | None

    @property
    def request_id(self) -> str | None:
        """The server's `x-request-id` for the call that produced this object."""
        return getattr(self, "_request_id", None)


class RequestModel(BaseModel):
    """Base of every request body: unknown fields are an error naming the field."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class Usage(ResponseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


class StreamOptions(RequestModel):
    include_usage: bool = False


class ErrorDetail(ResponseModel):
    message: str
    type: str = "invalid_request_error"
    param: str | None = None
    code: str | None = None


class ErrorBody(ResponseModel):
    """`{"error": {"message", "type", "param", "code"}}`, as OpenAI and vLLM send it."""

    error: ErrorDetail
