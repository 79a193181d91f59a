"""Shapes shared by every operation: base classes, usage and the error body."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, PrivateAttr


class ResponsePart(BaseModel):
    """Base of the objects nested inside response bodies (choices, usage, list items):
    unknown fields are kept, not rejected.

    Unlike `ResponseModel` it has no `request_id`: a private attribute costs pydantic
    a call per object validated, which roughly doubles the time to parse a streamed chunk.
    """

    model_config = ConfigDict(extra="allow", protected_namespaces=())


class ResponseModel(ResponsePart):
    """Base of every response body: unknown fields are kept, not rejected.

    `request_id` is filled in by the SDK from the `x-request-id` header; it is
    not part of the JSON body.
    """

    _request_id: str | None = PrivateAttr(default=None)

    @property
    def request_id(self) -> str | None:
        """The server's `x-request-id` for the call that produced this object."""
        return self._request_id


class RequestModel(BaseModel):
    """Base of every request body: unknown fields are an error naming the field."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class Usage(ResponsePart):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


class StreamOptions(RequestModel):
    include_usage: bool = False


class ErrorDetail(ResponsePart):
    message: str
    type: str = "invalid_request_error"
    param: str | None = None
    code: str | None = None


class ErrorBody(ResponseModel):
    """`{"error": {"message", "type", "param", "code"}}`, as OpenAI and vLLM send it."""

    error: ErrorDetail
