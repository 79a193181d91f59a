"""The retry policy, shared by the sync client (`tenacity.Retrying`) and the async one (`tenacity.AsyncRetrying`).

A retry covers one request up to its answer's headers (and, for answers that are not
streamed, its body): a stream whose body has started is never retried, since the
caller may already have seen part of it.

What is retried: connection errors, timeouts, and the statuses 408, 409, 429 and
500 or above; an `x-should-retry: true|false` answer header overrides that. A 429
`quota_exceeded` (a monthly budget used up) is never retried. How long
to wait: the server's `retry-after-ms` or `retry-after` (seconds or an HTTP date)
when it asks for more than 0 and at most `MAX_RETRY_AFTER` seconds, else an
exponential back-off with jitter. Every attempt carries `x-maas-retry-count`
(0 on the first); the caller sets the `Idempotency-Key` once per call, so every
attempt of a call repeats it and the server can tell a retry from a new call.
"""

from __future__ import annotations

import email.utils
import random
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, TypeVar

import httpx
import tenacity

from maas_sdk._exceptions import APIConnectionError, APIError, APIStatusError, QuotaExceededError
from maas_sdk._logging import logger

__all__ = ["MAX_RETRY_AFTER", "RetryPolicy", "backoff", "retry_after", "should_retry"]

RETRY_COUNT_HEADER = "x-maas-retry-count"
INITIAL_BACKOFF = 0.5
MAX_BACKOFF = 8.0
MAX_RETRY_AFTER = 60.0
_RETRYABLE_STATUSES = frozenset({408, 409, 429})
T = TypeVar("T")


def should_retry_response(response: httpx.Response) -> bool:
    override = response.headers.get("x-should-retry")
    if override == "true":
        return True
    if override == "false":
        return False
    status = response.status_code
    return status in _RETRYABLE_STATUSES or status >= 500


def should_retry(error: BaseException) -> bool:
    if isinstance(error, QuotaExceededError):
        return False  # the budget renews in days, not seconds
    if isinstance(error, APIStatusError):
        return should_retry_response(error.response)
    return isinstance(error, APIConnectionError)


def retry_after(headers: httpx.Headers, now: Callable[[], float] = time.time) -> float | None:
    """The delay the server asked for, in seconds, if it is usable (0 < delay <= MAX_RETRY_AFTER)."""
    delay = _parse_retry_after(headers, now)
    if delay is not None and 0 < delay <= MAX_RETRY_AFTER:
        return delay
    return None


def _parse_retry_after(headers: httpx.Headers, now: Callable[[], float]) -> float | None:
    milliseconds = headers.get("retry-after-ms")
    if milliseconds is not None:
        try:
            return float(milliseconds) / 1000
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        date = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return date.timestamp() - now()


def backoff(retries_done: int) -> float:
    """Exponential back-off with up to 25% jitter: about 0.5 s, 1 s, 2 s, ... capped at 8 s."""
    return min(INITIAL_BACKOFF * 2.0**retries_done, MAX_BACKOFF) * (1 - 0.25 * random.random())


def _wait(state: tenacity.RetryCallState) -> float:
    error = state.outcome.exception() if state.outcome is not None else None
    if isinstance(error, APIStatusError):
        asked = retry_after(error.response.headers)
        if asked is not None:
            return asked
    return backoff(state.attempt_number - 1)


# The tenacity hooks find the request as the first argument of the attempt function.


def _count_attempt(state: tenacity.RetryCallState) -> None:
    if state.attempt_number > 1:  # the first attempt's "0" is set when the request is built
        state.args[0].headers[RETRY_COUNT_HEADER] = str(state.attempt_number - 1)


def _log_retry(max_retries: int, state: tenacity.RetryCallState) -> None:
    request = state.args[0]
    error = state.outcome.exception() if state.outcome is not None else None
    delay = state.next_action.sleep if state.next_action is not None else 0.0
    logger.info(
        "retrying %s %s in %.2fs (retry %d of %d) after: %s",
        request.method, request.url, delay, state.attempt_number, max_retries, error,
    )


def _replaying(failure: APIError, attempt: Callable[[httpx.Request, bool], T]) -> Callable[[httpx.Request, bool], T]:
    """`attempt`, except that its first call raises `failure` (the attempt already made)."""
    pending = [failure]

    def replay(request: httpx.Request, stream: bool) -> T:
        if pending:
            raise pending.pop()
        return attempt(request, stream)

    return replay


def _replaying_async(
    failure: APIError, attempt: Callable[[httpx.Request, bool], Awaitable[httpx.Response]]
) -> Callable[[httpx.Request, bool], Awaitable[httpx.Response]]:
    """`_replaying` for a coroutine attempt, as a coroutine function (tenacity checks which kind it runs)."""
    replay = _replaying(failure, attempt)

    async def replay_async(request: httpx.Request, stream: bool) -> httpx.Response:
        return await replay(request, stream)

    return replay_async


class RetryPolicy:
    """How many times to retry; runs a call's attempts under tenacity.

    The first attempt is made directly, so a call that succeeds (or fails for good)
    pays nothing for the retry machinery. If it fails in a way worth retrying, tenacity
    takes over: its first "attempt" re-raises that failure, so tenacity decides how
    long to wait, and judges every later attempt.
    The stop, wait and retry rules are made once, here; the controller per call (it
    keeps the call's progress). The attempt function takes the `httpx.Request` first.
    """

    __slots__ = ("_rules", "max_retries")

    def __init__(self, max_retries: int) -> None:
        self.max_retries = max_retries
        self._rules: dict[str, Any] = {
            "stop": tenacity.stop_after_attempt(max_retries + 1),
            "wait": _wait,
            "retry": tenacity.retry_if_exception(should_retry),
            "before": _count_attempt,
            "before_sleep": partial(_log_retry, max_retries),
            "reraise": True,
        }

    def _retries(self, failure: APIError) -> bool:
        """Whether tenacity would retry after this first failure (if not, it is raised as it is)."""
        return self.max_retries > 0 and should_retry(failure)

    def send(
        self,
        attempt: Callable[[httpx.Request, bool], httpx.Response],
        request: httpx.Request,
        stream: bool,
        sleep: Callable[[float], None],
    ) -> httpx.Response:
        try:
            return attempt(request, stream)
        except APIError as failure:
            if not self._retries(failure):
                raise
            resumed = _replaying(failure, attempt)
        return tenacity.Retrying(sleep=sleep, **self._rules)(resumed, request, stream)

    async def async_send(
        self,
        attempt: Callable[[httpx.Request, bool], Awaitable[httpx.Response]],
        request: httpx.Request,
        stream: bool,
        sleep: Callable[[float], Awaitable[None]],
    ) -> httpx.Response:
        try:
            return await attempt(request, stream)
        except APIError as failure:
            if not self._retries(failure):
                raise
            resumed = _replaying_async(failure, attempt)
        return await tenacity.AsyncRetrying(sleep=sleep, **self._rules)(resumed, request, stream)
