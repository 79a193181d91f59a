"""What the calling key used, in pages of time buckets: `GET /v1/usage` (requests, tokens read and
written, inputs embedded or classified, tokens trained: every kind of use), and OpenAI's Usage API
for completions and embeddings in OpenAI's shape. Each key sees only its own use; an organization
is one key here, so the `organization` routes answer for the calling key alone.

Buckets are `bucket_width` long and start at multiples of it (UTC); a page covers `limit` of
them from `start_time` (or from `page`, the previous page's `next_page`) up to `end_time`
(default: now), empty buckets included, as OpenAI pages them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response

from maas_sdk.protocol import (
    CompletionsUsageResult,
    EmbeddingsUsageResult,
    UsageBucket,
    UsagePage,
    UsageResult,
)
from maas_sdk.protocol.usage import ResultT
from maas_sdk.protocol.vocabulary import BUCKET_WIDTHS, USAGE_KINDS
from reference_server.http.errors import bad_request, not_found
from reference_server.http.middleware.auth import caller_of
from reference_server.http.parsing import json_response
from reference_server.http.routes import _query
from reference_server.http.routing import Param, RouteTable
from reference_server.state import state_of
from reference_server.storage.records import UsageRow

table = RouteTable("usage")

# Buckets per page by width, as OpenAI pages them: (default, most).
_PAGE_SIZES = {"1m": (60, 1440), "1h": (24, 168), "1d": (7, 31)}
_LIST = {"type": "array", "items": {"type": "string"}}
_LATEST = 253402300799  # 9999-12-31T23:59:59Z: any later time is a typo, and would overflow the store's integers


@dataclass
class Window:
    """The buckets a page covers: `[first, stop)`, `width` seconds each; `rows_from` is where counting starts."""

    first: int
    stop: int
    width: int
    rows_from: int
    has_more: bool


def _time(request: Request, name: str) -> int | None:
    raw = request.query_params.get(name)
    if raw is None:
        return None
    try:
        value = int(raw)
    except ValueError:
        raise bad_request(f"{name} must be a Unix time in whole seconds, got {raw!r}.", param=name) from None
    if not 0 <= value <= _LATEST:
        raise bad_request(f"{name} must be a Unix time from 0 to {_LATEST}, got {value}.", param=name)
    return value


def _list(request: Request, name: str, allowed: Sequence[str] | None = None) -> list[str]:
    """A list parameter, repeated (`name=a&name=b`, also as `name[]=`) or comma-separated."""
    values = [v.strip() for key in (name, name + "[]") for raw in request.query_params.getlist(key)
              for v in raw.split(",") if v.strip()]
    for value in values:
        if allowed is not None and value not in allowed:
            raise bad_request(f"{name} may hold {', '.join(allowed)}; got {value!r}.", param=name)
    return values


def _window(request: Request) -> Window:
    start = _time(request, "start_time")
    if start is None:
        raise bad_request("start_time is required: the Unix time (seconds) the usage starts at.", param="start_time")
    now = int(time.time())
    end = _time(request, "end_time")
    if end is None:
        end = max(now, start + 1)
    if end <= start:
        raise bad_request(f"end_time ({end}) must be after start_time ({start}).", param="end_time")
    name = _query.choice(request, "bucket_width", tuple(BUCKET_WIDTHS), "1d")
    assert name is not None
    width = BUCKET_WIDTHS[name]
    default, most = _PAGE_SIZES[name]
    limit = _query.limit(request, default, most)
    first = start // width * width
    raw_page = request.query_params.get("page")
    if raw_page is not None:
        if not raw_page.isdigit() or not first <= int(raw_page) < end or (int(raw_page) - first) % width:
            raise bad_request("page is not a next_page of this query.", param="page")
        first = int(raw_page)
    stop = min(first + limit * width, end)
    return Window(first=first, stop=stop, width=width, rows_from=max(first, start // 60 * 60), has_more=stop < end)


def _page(window: Window, rows: list[UsageRow], result: Callable[[UsageRow], ResultT]) -> UsagePage[ResultT]:
    buckets = {b: UsageBucket[ResultT](start_time=b, end_time=b + window.width, results=[])
               for b in range(window.first, window.stop, window.width)}
    for row in rows:
        buckets[row.bucket].results.append(result(row))
    return UsagePage[ResultT](data=list(buckets.values()), has_more=window.has_more,
                              next_page=str(window.stop) if window.has_more else None)


async def _models(request: Request) -> list[str]:
    """The `models` filter. A model the key can neither call nor has used is a 404, as everywhere:
    another key's fine-tuned model reads exactly like an unknown one."""
    models = _list(request, "models")
    key = caller_of(request).principal
    state = state_of(request)
    visible = {m.id for m in state.registry.list_for(key)}
    unseen = [m for m in models if m not in visible]
    if unseen:
        used = await state.usage.models_used(key, unseen)
        for model in unseen:
            if model not in used:
                raise not_found(f"The model '{model}' does not exist.", param="models", code="model_not_found")
    return models


async def _rows(request: Request, window: Window, *, kinds: Sequence[str], by_model: bool,
                by_kind: bool = False) -> list[UsageRow]:
    models = await _models(request)
    return await state_of(request).usage.usage(caller_of(request).principal, window.rows_from, window.stop,
                                               window.width, by_model=by_model, by_kind=by_kind, models=models,
                                               kinds=kinds)


_COMMON = (
    Param("start_time", "query", {"type": "integer", "minimum": 0, "maximum": _LATEST},
          "Unix seconds: usage from then on.", required=True),
    Param("end_time", "query", {"type": "integer", "minimum": 1, "maximum": _LATEST},
          "Unix seconds: usage before then, after start_time (default: now)."),
    Param("bucket_width", "query", {"type": "string", "enum": list(BUCKET_WIDTHS)}, "Bucket length (default 1d)."),
    Param("models", "query", _LIST, "Only these models."),
    Param("limit", "query", {"type": "integer", "minimum": 1, "maximum": max(most for _, most in _PAGE_SIZES.values())},
          "Buckets per page: 1d: 7 by default, at most 31; 1h: 24, 168; 1m: 60, 1440."),
    Param("page", "query", {"type": "string", "pattern": "^[0-9]+$"}, "The `next_page` of the previous page."),
)


@table.route("GET", "/v1/usage", "What this API key used, per time bucket: every kind of use.",
             response=UsagePage[UsageResult], errors=(400, 404), params=(
                 *_COMMON,
                 Param("group_by", "query", {"type": "array", "items": {"type": "string", "enum": ["model", "kind"]}},
                       "One result per model, per kind of use, or both."),
                 Param("kinds", "query", {"type": "array", "items": {"type": "string", "enum": list(USAGE_KINDS)}},
                       "Only these kinds of use."),
             ))
async def usage(request: Request) -> Response:
    _query.only(request, "start_time", "end_time", "bucket_width", "group_by", "group_by[]", "models", "models[]",
                "kinds", "kinds[]", "limit", "page")
    window = _window(request)
    group_by = _list(request, "group_by", ("model", "kind"))
    rows = await _rows(request, window, kinds=_list(request, "kinds", USAGE_KINDS), by_model="model" in group_by,
                       by_kind="kind" in group_by)

    def result(row: UsageRow) -> UsageResult:
        c = row.counts
        return UsageResult(model=row.model, kind=row.kind, requests=c.requests, prompt_tokens=c.prompt_tokens,
                           completion_tokens=c.completion_tokens, inputs=c.inputs, trained_tokens=c.trained_tokens,
                           total_tokens=c.tokens)

    return json_response(_page(window, rows, result))


_ORGANIZATION = (
    *_COMMON,
    Param("group_by", "query", {"type": "array", "items": {"type": "string", "enum": ["model", "api_key_id"]}},
          "One result per model, per API key (only the calling one), or both."),
    Param("api_key_ids", "query", _LIST, "Only these API keys (the calling key's id is its `api_key_id`)."),
)
_ORGANIZATION_PARAMS = ("start_time", "end_time", "bucket_width", "group_by", "group_by[]", "models", "models[]",
                        "api_key_ids", "api_key_ids[]", "limit", "page")


async def _organization_rows(request: Request, window: Window, kind: str) -> tuple[list[UsageRow], str | None]:
    """The rows of `kind`, and the `api_key_id` results carry (when grouped by it)."""
    group_by = _list(request, "group_by", ("model", "api_key_id"))
    key = caller_of(request).principal
    keys = _list(request, "api_key_ids")
    rows = await _rows(request, window, kinds=[kind], by_model="model" in group_by)
    return rows if not keys or key in keys else [], key if "api_key_id" in group_by else None


@table.route("GET", "/v1/organization/usage/completions", "OpenAI's completions usage, of this API key.",
             response=UsagePage[CompletionsUsageResult], errors=(400, 404), params=_ORGANIZATION)
async def completions_usage(request: Request) -> Response:
    _query.only(request, *_ORGANIZATION_PARAMS)
    window = _window(request)
    rows, key = await _organization_rows(request, window, "completions")
    return json_response(_page(window, rows, lambda row: CompletionsUsageResult(
        input_tokens=row.counts.prompt_tokens, output_tokens=row.counts.completion_tokens,
        num_model_requests=row.counts.requests, model=row.model, api_key_id=key)))


@table.route("GET", "/v1/organization/usage/embeddings", "OpenAI's embeddings usage, of this API key.",
             response=UsagePage[EmbeddingsUsageResult], errors=(400, 404), params=_ORGANIZATION)
async def embeddings_usage(request: Request) -> Response:
    _query.only(request, *_ORGANIZATION_PARAMS)
    window = _window(request)
    rows, key = await _organization_rows(request, window, "embeddings")
    return json_response(_page(window, rows, lambda row: EmbeddingsUsageResult(
        input_tokens=row.counts.prompt_tokens, num_model_requests=row.counts.requests, model=row.model,
        api_key_id=key)))

