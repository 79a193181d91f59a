"""HTTP error answers become typed exceptions carrying the server's message, param, code and request id."""

from __future__ import annotations

import httpx
import pytest

import maas_sdk as sdk

from .fakes import make_client


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (400, sdk.BadRequestError),
        (401, sdk.AuthenticationError),
        (403, sdk.PermissionDeniedError),
        (404, sdk.NotFoundError),
        (409, sdk.ConflictError),
        (413, sdk.RequestTooLargeError),
        (422, sdk.UnprocessableEntityError),
        (429, sdk.RateLimitError),
        (500, sdk.InternalServerError),
        (503, sdk.InternalServerError),
        (418, sdk.APIStatusError),
    ],
)
def test_status_maps_to_exception(status: int, error: type[sdk.APIStatusError]) -> None:
    body = {"error": {"message": "it failed", "type": "some_type", "param": "temperature", "code": "bad_value"}}

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json=body, headers={"x-request-id": "req-42", "x-should-retry": "false"})

    with pytest.raises(error) as info:
        make_client(handler).generate("hi", model="m", temperature=9)
    exc = info.value
    assert type(exc) is error
    assert isinstance(exc, sdk.APIError) and isinstance(exc, sdk.MaaSError)
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

    with pytest.raises(sdk.NotFoundError) as info:
        make_client(handler).models.list()
    assert info.value.body == "no such route"
    assert "no such route" in str(info.value)
    assert info.value.param is None and info.value.code is None


def test_flat_error_shape_is_understood() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, json={"object": "error", "message": "bad n", "type": "BadRequestError",
                                         "param": "n", "code": 400})

    with pytest.raises(sdk.BadRequestError) as info:
        make_client(handler).generate("hi", model="m")
    assert info.value.param == "n"
    assert info.value.code == "400"
    assert "bad n" in str(info.value)


def test_hierarchy() -> None:
    assert issubclass(sdk.APITimeoutError, sdk.APIConnectionError)
    assert issubclass(sdk.APIConnectionError, sdk.APIError)
    assert issubclass(sdk.RequestTooLargeError, sdk.APIStatusError)
    assert issubclass(sdk.APIStatusError, sdk.APIError)
    assert issubclass(sdk.APIError, sdk.MaaSError)
