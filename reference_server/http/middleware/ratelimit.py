"""Per-API-key rate limits: requests per minute and tokens per minute.

Both use the `limits` library's moving window in memory, so a burst cannot slip in at
a window boundary, and each key (principal) has its own windows. Requests are counted
by `RateLimitMiddleware` as they arrive on `/v1`. Tokens are counted at admission,
before any work is done, by the route that knows them (`charge_tokens`, which first checks
the key's monthly token budget, `admit_budget`): prompt tokens
plus `max_tokens` for generation, input tokens for embeddings and classification (counted in
a worker thread, off the event loop). That
is an upper bound of what the request will use, as OpenAI counts it, and it means a
request is never stopped half-way; unused completion tokens are not refunded.

Over a limit: 429, code `rate_limit_exceeded`, `Retry-After` = whole seconds until the
oldest hit leaves the window. A request that alone needs more tokens than the
per-minute limit could never pass, so it is a 400 naming `max_tokens` (or the input)
instead of a 429 a client would retry forever.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

from limits import RateLimitItem, RateLimitItemPerMinute
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import MovingWindowRateLimiter
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from reference_server.http.errors import HTTPError, bad_request
from reference_server.http.middleware.auth import caller_of
from reference_server.settings import Settings
from reference_server.state import state_of


class RateLimits:
    """The request and token windows of every key; a limit of None is off."""

    def __init__(self, rpm: int | None, tpm: int | None) -> None:
        self._limiter = MovingWindowRateLimiter(MemoryStorage())
        self.requests: RateLimitItem | None = RateLimitItemPerMinute(rpm, namespace="rpm") if rpm else None
        self.tokens: RateLimitItem | None = RateLimitItemPerMinute(tpm, namespace="tpm") if tpm else None

    @classmethod
    def from_settings(cls, settings: Settings) -> RateLimits:
        return cls(settings.rate_limit_rpm, settings.rate_limit_tpm)

    async def admit_request(self, principal: str) -> None:
        if self.requests is not None and not await self._limiter.hit(self.requests, principal):
            raise await self._exceeded(self.requests, principal, "requests")

    async def admit_tokens(self, principal: str, tokens: int, param: str) -> None:
        if self.tokens is None or tokens <= 0:
            return
        if tokens > self.tokens.amount:
            raise bad_request(
                f"This request needs {tokens} tokens, more than this API key's limit of "
                f"{self.tokens.amount} tokens per minute; reduce {param}.",
                param=param, code="rate_limit_exceeded",
            )
        if not await self._limiter.hit(self.tokens, principal, cost=tokens):
            raise await self._exceeded(self.tokens, principal, "tokens", tokens)

    async def _exceeded(self, item: RateLimitItem, principal: str, unit: str, cost: int = 1) -> HTTPError:
        stats = await self._limiter.get_window_stats(item, principal)
        wait = max(1, math.ceil(stats.reset_time - time.time()))
        asked = f" ({cost} asked, {stats.remaining} left)" if unit == "tokens" else ""
        return HTTPError(
            429,
            f"Rate limit reached: {item.amount} {unit} per minute for this API key{asked}. "
            f"Retry in {wait} s.",
            code="rate_limit_exceeded",
            headers={"retry-after": str(wait)},
        )


async def admit_budget(request: Request) -> None:
    """429 `quota_exceeded` if the caller's key has used up its monthly token budget (if it has one)."""
    await state_of(request).usage.check_quota(request.state.principal, caller_of(request).monthly_tokens)


async def charge_tokens(request: Request, tokens: int, param: str) -> None:
    """Admit a request of `tokens` within the caller's monthly budget and tokens-per-minute window,
    or raise 429/400."""
    await admit_budget(request)
    limits: RateLimits = state_of(request).rate_limits
    await limits.admit_tokens(request.state.principal, tokens, param)


async def charge_input_tokens(request: Request, tokenizer: Any, inputs: Sequence[str | Sequence[int]],
                              param: str = "input") -> None:
    """Charge the tokens of `inputs` (texts or token-id lists), as `charge_tokens`. They are
    counted only when a tokens-per-minute limit is set (so this costs nothing otherwise), with the
    settings the embedding batcher uses, so texts count as in the usage reported; token ids count as sent."""
    await admit_budget(request)
    limits: RateLimits = state_of(request).rate_limits
    if limits.tokens is None:
        return
    texts = [item for item in inputs if isinstance(item, str)]
    tokens = sum(len(item) for item in inputs if not isinstance(item, str))
    if texts:
        tokens += await state_of(request).thread_work.run(_count_tokens, tokenizer, texts)
    await limits.admit_tokens(request.state.principal, tokens, param)


def _count_tokens(tokenizer: Any, texts: list[str]) -> int:
    return sum(len(ids) for ids in tokenizer(texts, add_special_tokens=True, truncation=False)["input_ids"])


class RateLimitMiddleware:
    """Counts each `/v1` request against its key's requests-per-minute window (after auth)."""

    def __init__(self, app: ASGIApp, limits: RateLimits) -> None:
        self.app = app
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.limits.requests is not None:
            try:
                await self.limits.admit_request(scope["state"]["principal"])
            except HTTPError as exc:
                await exc.response()(scope, receive, send)
                return
        await self.app(scope, receive, send)
