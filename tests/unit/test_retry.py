"""The retry policy, as tables: what is retried, how often, how long to wait, and what each attempt carries."""

from __future__ import annotations

import email.utils
import time

import httpx
import pytest

from maas_sdk import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    InternalServerError,
    NotFoundError,
    QuotaExceededError,
    RateLimitError,
    UnprocessableEntityError,
    _retry,
)
from maas_sdk._retry import MAX_RETRY_AFTER, backoff, retry_after

from .fakes import FakeClock, error_response, generation, json_response, make_async_client, make_client


class Script:
    """A handler answering from a list of responses (or exceptions; the last one repeats).

    `requests` holds a copy of each request as it was sent: a retry re-sends the same
    request object with updated headers.
    """

    def __init__(self, *answers: httpx.Response | Exception) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(httpx.Request(request.method, request.url, headers=request.headers.copy()))
        answer = self.answers[min(len(self.requests), len(self.answers)) - 1]
        if isinstance(answer, Exception):
            raise answer
        return httpx.Response(answer.status_code, headers=answer.headers, content=answer.content)


OK = json_response(generation())


@pytest.mark.parametrize(
    ("status", "error"),
    [(408, APIStatusError), (409, ConflictError), (429, RateLimitError), (500, InternalServerError),
     (502, InternalServerError), (503, InternalServerError), (504, InternalServerError)],
)
def test_retryable_status_is_retried_until_max_retries(status: int, error: type, clock: FakeClock) -> None:
    script = Script(error_response(status))
    client = make_client(script, clock, max_retries=2)
    with pytest.raises(error) as info:
        client.generate("hi", model="m")
    assert info.value.status_code == status
    assert len(script.requests) == 3
    assert len(clock.sleeps) == 2


@pytest.mark.parametrize(
    ("status", "error"),
    [(400, BadRequestError), (401, AuthenticationError), (404, NotFoundError), (422, UnprocessableEntityError)],
)
def test_client_errors_are_not_retried(status: int, error: type, clock: FakeClock) -> None:
    script = Script(error_response(status))
    with pytest.raises(error):
        make_client(script, clock).generate("hi", model="m")
    assert len(script.requests) == 1
    assert clock.sleeps == []


@pytest.mark.parametrize("max_retries", [0, 1, 2, 5])
def test_attempt_count_follows_max_retries(max_retries: int, clock: FakeClock) -> None:
    script = Script(error_response(503))
    with pytest.raises(InternalServerError):
        make_client(script, clock, max_retries=max_retries).generate("hi", model="m")
    assert len(script.requests) == max_retries + 1


def test_with_options_overrides_max_retries(clock: FakeClock) -> None:
    script = Script(error_response(503))
    client = make_client(script, clock, max_retries=0)
    with pytest.raises(InternalServerError):
        client.with_options(max_retries=3).generate("hi", model="m")
    assert len(script.requests) == 4
    assert client.max_retries == 0


def test_success_after_retries_returns_the_result(clock: FakeClock) -> None:
    script = Script(error_response(500), error_response(429), OK)
    result = make_client(script, clock).generate("hi", model="m")
    assert result.text == "Hello"
    assert len(script.requests) == 3


@pytest.mark.parametrize(
    ("status", "header", "attempts"),
    [(400, "true", 3), (500, "false", 1), (429, "false", 1), (404, "true", 3)],
)
def test_x_should_retry_overrides_the_status(status: int, header: str, attempts: int, clock: FakeClock) -> None:
    response = httpx.Response(status, json={"error": {"message": "x"}}, headers={"x-should-retry": header})
    script = Script(response)
    with pytest.raises(APIStatusError):
        make_client(script, clock).generate("hi", model="m")
    assert len(script.requests) == attempts


def test_a_used_up_monthly_budget_is_never_retried(clock: FakeClock) -> None:
    """Even without `x-should-retry` (a proxy may drop it), the code alone says no retry can succeed."""
    response = httpx.Response(429, headers={"retry-after": "86400"},
                              json={"error": {"message": "budget used", "type": "rate_limit_error",
                                              "code": "quota_exceeded", "param": None}})
    script = Script(response)
    with pytest.raises(QuotaExceededError) as info:
        make_client(script, clock, max_retries=3).generate("hi", model="m")
    assert isinstance(info.value, RateLimitError) and info.value.retry_after == 86400
    assert len(script.requests) == 1 and clock.sleeps == []


def _http_date(seconds_from_now: float) -> str:
    return email.utils.formatdate(time.time() + seconds_from_now, usegmt=True)


# Stand-ins for HTTP dates, made when the test runs (not when it is collected).
IN_10_S, AGO_30_S = "<date in 10 s>", "<date 30 s ago>"


@pytest.mark.parametrize(
    ("headers", "low", "high"),
    [
        ({"retry-after": "3"}, 3.0, 3.0),
        ({"retry-after": "1.5"}, 1.5, 1.5),
        ({"retry-after-ms": "250"}, 0.25, 0.25),
        ({"retry-after-ms": "250", "retry-after": "9"}, 0.25, 0.25),
        ({"retry-after-ms": "soon", "retry-after": "4"}, 4.0, 4.0),
        ({"retry-after": str(MAX_RETRY_AFTER)}, MAX_RETRY_AFTER, MAX_RETRY_AFTER),
        # An HTTP date: about 10 s away (the header has whole seconds).
        ({"retry-after": IN_10_S}, 8.5, 10.5),
        # Unusable values fall back to the first back-off step, 0.5 s less up to 25% jitter.
        ({"retry-after": str(MAX_RETRY_AFTER + 1)}, 0.375, 0.5),
        ({"retry-after": "-1"}, 0.375, 0.5),
        ({"retry-after": "0"}, 0.375, 0.5),
        ({"retry-after": "soon"}, 0.375, 0.5),
        ({"retry-after": AGO_30_S}, 0.375, 0.5),
        ({"retry-after-ms": "600000"}, 0.375, 0.5),
        ({}, 0.375, 0.5),
    ],
)
def test_wait_honours_retry_after(headers: dict[str, str], low: float, high: float, clock: FakeClock) -> None:
    dates = {IN_10_S: _http_date(10), AGO_30_S: _http_date(-30)}
    headers = {name: dates.get(value, value) for name, value in headers.items()}
    script = Script(httpx.Response(429, json={"error": {"message": "slow"}}, headers=headers), OK)
    make_client(script, clock).generate("hi", model="m")
    assert len(clock.sleeps) == 1
    assert low <= clock.sleeps[0] <= high


def test_backoff_doubles_up_to_the_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_retry.random, "random", lambda: 0.0)
    assert [backoff(n) for n in range(6)] == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0]
    monkeypatch.setattr(_retry.random, "random", lambda: 1.0)
    assert [backoff(n) for n in range(6)] == [0.375, 0.75, 1.5, 3.0, 6.0, 6.0]


def test_successive_waits_grow(clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_retry.random, "random", lambda: 0.0)
    script = Script(error_response(500))
    with pytest.raises(InternalServerError):
        make_client(script, clock, max_retries=4).generate("hi", model="m")
    assert clock.sleeps == [0.5, 1.0, 2.0, 4.0]


def test_retry_after_parser_directly() -> None:
    now = 1_700_000_000.0
    date = email.utils.formatdate(now + 20, usegmt=True)
    assert retry_after(httpx.Headers({"retry-after": date}), now=lambda: now) == 20.0
    assert retry_after(httpx.Headers({"retry-after": "61"})) is None
    assert retry_after(httpx.Headers({})) is None


def test_idempotency_key_is_kept_across_retries_and_new_per_call(clock: FakeClock) -> None:
    script = Script(error_response(500), error_response(500), OK)
    client = make_client(script, clock)
    client.generate("hi", model="m")
    keys = [r.headers["idempotency-key"] for r in script.requests]
    assert len(set(keys)) == 1 and keys[0].startswith("maas-")
    script.answers = [OK]
    client.generate("hi", model="m")
    assert script.requests[-1].headers["idempotency-key"] != keys[0]


def test_caller_idempotency_key_is_used(clock: FakeClock) -> None:
    script = Script(error_response(500), OK)
    make_client(script, clock).generate("hi", model="m", extra_headers={"Idempotency-Key": "mine"})
    assert [r.headers["idempotency-key"] for r in script.requests] == ["mine", "mine"]


def test_get_requests_carry_no_idempotency_key(clock: FakeClock) -> None:
    script = Script(json_response({"object": "list", "data": []}))
    make_client(script, clock).models.list()
    assert "idempotency-key" not in script.requests[0].headers


def test_retry_count_header_increments(clock: FakeClock) -> None:
    script = Script(error_response(502), error_response(503), OK)
    make_client(script, clock).generate("hi", model="m")
    assert [r.headers["x-maas-retry-count"] for r in script.requests] == ["0", "1", "2"]


def test_connection_errors_are_retried_then_raised(clock: FakeClock) -> None:
    script = Script(httpx.ConnectError("refused"))
    with pytest.raises(APIConnectionError) as info:
        make_client(script, clock).generate("hi", model="m")
    assert not isinstance(info.value, APITimeoutError)
    assert isinstance(info.value.__cause__, httpx.ConnectError)
    assert len(script.requests) == 3


@pytest.mark.parametrize("error", [httpx.ReadTimeout("slow"), httpx.ConnectTimeout("slow"), httpx.PoolTimeout("full")])
def test_timeouts_are_retried_then_raised(error: Exception, clock: FakeClock) -> None:
    script = Script(error)
    with pytest.raises(APITimeoutError):
        make_client(script, clock).generate("hi", model="m")
    assert len(script.requests) == 3


def test_connection_error_then_success(clock: FakeClock) -> None:
    script = Script(httpx.RemoteProtocolError("dropped"), OK)
    assert make_client(script, clock).generate("hi", model="m").text == "Hello"
    assert len(script.requests) == 2


async def test_async_client_uses_the_same_policy(clock: FakeClock) -> None:
    script = Script(error_response(503), httpx.ConnectError("refused"), OK)
    result = await make_async_client(script, clock).generate("hi", model="m")
    assert result.text == "Hello"
    assert [r.headers["x-maas-retry-count"] for r in script.requests] == ["0", "1", "2"]
    assert len({r.headers["idempotency-key"] for r in script.requests}) == 1
    assert len(clock.sleeps) == 2


async def test_async_client_gives_up_like_the_sync_one(clock: FakeClock) -> None:
    script = Script(httpx.ReadTimeout("slow"))
    with pytest.raises(APITimeoutError):
        await make_async_client(script, clock, max_retries=1).generate("hi", model="m")
    assert len(script.requests) == 2
