"""HTTP error answers become typed exceptions carrying the server's message, param, code and request id."""

from __future__ import annotations

import httpx
import pytest

from maas_sdk import (
    APIConnectionError,
    APIError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    InternalServerError,
    MaaSError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    RequestTooLargeError,
    UnprocessableEntityError,
)

from .fakes import make_client


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (400, BadRequestError),
        (401, AuthenticationError),
        (403, PermissionDeniedError),
        (404, NotFoundError),
        (409, ConflictError),
        (413, RequestTooLargeError),
        (422, UnprocessableEntityError),
        (429, RateLimitError),
        (500, InternalServerError),
        (503, InternalServerError),
        (418, APIStatusError),
    ],
)
def test_status_maps_to_exception(status: int, error: type[APIStatusError]) -> None:
    body = {"error": {"message": "it failed", "type": "some_type", "param": "temperature", "code": "bad_value"}}

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json=body, headers={"x-request-id": "req-42", "x-should-retry": "false"})

    with pytest.raises(error) as info:
        make_client(handler).generate("hi", model="m", temperature=9)
    exc = info.value
    assert type(exc) is error
    assert isinstance(exc, APIError) and isinstance(exc, MaaSError)
    assert exc.status_code == status
    assert exc.param == "temperature"
    assert exc.code == "bad_value"
    assert exc.type == "some_type"
    assert exc.request_id == "req-42"
    assert exc.body == body
    assert exc.response.status_code == status
    assert exc.request is not None and exc.request.url.path == "/v1/completions"
    message = str(exc)
    assert "it failed" in message and "temperature" in message and str(status) in message


def test_error_without_json_body_keeps_the_text() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404, text="no such route")

    with pytest.raises(NotFoundError) as info:
        make_client(handler).models.list()
    assert info.value.body == "no such route"
    assert "no such route" in str(info.value)
    assert info.value.param is None and info.value.code is None


def test_flat_error_shape_is_understood() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, json={"object": "error", "message": "bad n", "type": "BadRequestError",
                                         "param": "n", "code": 400})

    with pytest.raises(BadRequestError) as info:
        make_client(handler).generate("hi", model="m")
    assert info.value.param == "n"
    assert info.value.code == "400"
    assert "bad n" in str(info.value)


def test_hierarchy() -> None:
    assert issubclass(APITimeoutError, APIConnectionError)
    assert issubclass(APIConnectionError, APIError)
    assert issubclass(RequestTooLargeError, APIStatusError)
    assert issubclass(APIStatusError, APIError)
    assert issubclass(APIError, MaaSError)
