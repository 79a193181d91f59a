"""`MaaS` and `AsyncMaaS` (and their resources) expose the same methods with the same signatures.

Parameters must match exactly (names, kinds, defaults, annotations); return
annotations may differ only by the async spelling of a type (`AsyncStream` for
`Stream`, `AsyncPager` for `Page`, ...), and async methods are coroutines unless
they return an async iterator or a pager. The raw views (`with_raw_response`,
`with_streaming_response`) offer the same methods on both, and pages, streams and
streamed responses have the same helpers.
"""

from __future__ import annotations

import inspect
import re
from typing import Any

import pytest
from typing_extensions import get_overloads

from maas_sdk import (
    AsyncBoundBatch,
    AsyncBoundFineTuningJob,
    AsyncMaaS,
    AsyncPage,
    AsyncStream,
    AsyncStreamedResponse,
    BoundBatch,
    BoundFineTuningJob,
    MaaS,
    Page,
    Stream,
    StreamedResponse,
)
from maas_sdk.resources import (
    AsyncBatches,
    AsyncFiles,
    AsyncFineTuning,
    AsyncFineTuningJobs,
    AsyncModels,
    AsyncResponses,
    Batches,
    Files,
    FineTuning,
    FineTuningJobs,
    Models,
    Responses,
)

PAIRS = [
    (MaaS, AsyncMaaS),
    (Models, AsyncModels),
    (Files, AsyncFiles),
    (FineTuning, AsyncFineTuning),
    (FineTuningJobs, AsyncFineTuningJobs),
    (Batches, AsyncBatches),
    (Responses, AsyncResponses),
]
# Spelled differently on purpose: context management.
SHELL_ONLY = {"__enter__", "__exit__", "__aenter__", "__aexit__"}
# What the sync and async helpers of pages, streams and streamed responses share.
HELPERS = [
    (Page, AsyncPage, ["get_next_page", "iter_pages"]),
    (Stream, AsyncStream, ["text_stream", "until_done", "get_final_completion", "get_final_response"]),
    (StreamedResponse, AsyncStreamedResponse,
     ["parse", "read", "text", "json", "iter_bytes", "iter_text", "iter_lines", "close"]),
]
# Async types whose sync counterpart is not their name without "Async": the async `list()`
# returns a pager, to await for the first page or to `async for` every item; the sync one the page.
ASYNC_SPELLINGS = {"AsyncPager": "Page"}


def public_names(cls: type) -> set[str]:
    return {name for name in dir(cls) if not name.startswith("_")}


def sync_spelling(annotation: str) -> str:
    for async_name, sync_name in ASYNC_SPELLINGS.items():
        annotation = re.sub(rf"\b{async_name}\b", sync_name, annotation)
    annotation = re.sub(r"\bAsync(?=[A-Z])", "", annotation)
    return re.sub(r"^(?:Async)?Iterator\[", "Iterator[", annotation)


def parameters(function: Any) -> list[tuple[str, Any, Any, Any]]:
    return [(p.name, p.kind, p.default, p.annotation) for p in inspect.signature(function).parameters.values()]


def returns(function: Any) -> str:
    return sync_spelling(str(inspect.signature(function).return_annotation))


@pytest.mark.parametrize(("sync", "async_"), PAIRS, ids=lambda cls: cls.__name__)
def test_same_public_names(sync: type, async_: type) -> None:
    assert public_names(sync) - SHELL_ONLY == public_names(async_) - SHELL_ONLY


@pytest.mark.parametrize(("sync", "async_"), PAIRS, ids=lambda cls: cls.__name__)
def test_same_signatures(sync: type, async_: type) -> None:
    for name in sorted(public_names(sync)):
        sync_attr, async_attr = inspect.getattr_static(sync, name), inspect.getattr_static(async_, name)
        if isinstance(sync_attr, property):
            assert isinstance(async_attr, property), name
            assert returns(sync_attr.fget) == returns(async_attr.fget), name
            continue
        assert parameters(sync_attr) == parameters(async_attr), name
        assert returns(sync_attr) == returns(async_attr), name
        sync_overloads, async_overloads = get_overloads(sync_attr), get_overloads(async_attr)
        assert len(sync_overloads) == len(async_overloads), name
        for sync_overload, async_overload in zip(sync_overloads, async_overloads):
            assert parameters(sync_overload) == parameters(async_overload), name
            assert returns(sync_overload) == returns(async_overload), name


@pytest.mark.parametrize(("sync", "async_"), PAIRS, ids=lambda cls: cls.__name__)
def test_async_methods_are_awaitable_or_async_iterables(sync: type, async_: type) -> None:
    for name in sorted(public_names(async_)):
        attr = inspect.getattr_static(async_, name)
        if isinstance(attr, property) or name == "with_options":
            continue
        iterates = str(inspect.signature(attr).return_annotation).startswith("AsyncPager")
        assert inspect.iscoroutinefunction(attr) is not iterates, name
        assert not inspect.iscoroutinefunction(inspect.getattr_static(sync, name)), name


def test_bound_jobs_wait_alike() -> None:
    assert parameters(BoundFineTuningJob.wait) == parameters(AsyncBoundFineTuningJob.wait)
    assert returns(BoundFineTuningJob.wait) == returns(AsyncBoundFineTuningJob.wait)
    assert inspect.iscoroutinefunction(AsyncBoundFineTuningJob.wait)


def test_bound_batches_alike() -> None:
    for name in ("wait", "results"):
        sync, async_ = getattr(BoundBatch, name), getattr(AsyncBoundBatch, name)
        assert parameters(sync) == parameters(async_) and returns(sync) == returns(async_), name
        assert inspect.iscoroutinefunction(async_), name


def test_the_documented_surface_exists() -> None:
    expected = {
        "generate", "chat", "embed", "classify", "rerank", "tokenize", "detokenize", "evaluate",
        "models", "files", "fine_tuning", "with_options", "close",
        "score", "with_raw_response", "with_streaming_response",
    }
    assert expected <= public_names(MaaS)
    for resource in (Models, Files, FineTuning, FineTuningJobs):
        assert {"with_raw_response", "with_streaming_response"} <= public_names(resource)
    assert {"data", "has_more", "has_next_page", "get_next_page", "iter_pages"} <= public_names(Page)
    assert {"text_stream", "until_done", "get_final_completion"} <= public_names(Stream)
    assert {"upload", "list", "retrieve", "content", "delete"} <= public_names(Files)
    assert {"create", "list", "retrieve", "cancel", "events", "checkpoints", "wait"} <= public_names(FineTuningJobs)
    assert {"create", "list", "retrieve", "cancel", "wait", "submit", "results"} <= public_names(Batches)
    generate = inspect.signature(MaaS.generate).parameters
    assert generate["stream"].default is False
    assert generate["model"].kind is inspect.Parameter.KEYWORD_ONLY
    init = inspect.signature(MaaS.__init__).parameters
    assert [name for name in init][1:] == [
        "api_key", "base_url", "timeout", "max_retries", "http_client", "default_headers",
    ]
    assert init["max_retries"].default == 2


@pytest.mark.parametrize(("sync", "async_", "names"), HELPERS, ids=lambda value: getattr(value, "__name__", ""))
def test_helpers_alike(sync: type, async_: type, names: list[str]) -> None:
    for name in names:
        sync_attr, async_attr = inspect.getattr_static(sync, name), inspect.getattr_static(async_, name)
        if isinstance(sync_attr, property):
            assert isinstance(async_attr, property), name
            sync_attr, async_attr = sync_attr.fget, async_attr.fget
        assert parameters(sync_attr)[1:] == parameters(async_attr)[1:], name
        assert returns(sync_attr) == returns(async_attr), name
        assert len(get_overloads(sync_attr)) == len(get_overloads(async_attr)), name
        assert not (inspect.iscoroutinefunction(sync_attr) or inspect.isasyncgenfunction(sync_attr)), name
        assert inspect.iscoroutinefunction(async_attr) or inspect.isasyncgenfunction(async_attr), name


@pytest.mark.parametrize("view", ["with_raw_response", "with_streaming_response"])
def test_raw_views_offer_every_request_alike(view: str) -> None:
    sync_client, async_client = MaaS(api_key="k"), AsyncMaaS(api_key="k")
    pairs = [(sync_client, async_client), *[
        (getattr(sync_client, name), getattr(async_client, name))
        for name in ("models", "files", "fine_tuning", "batches", "responses")
    ], (sync_client.fine_tuning.jobs, async_client.fine_tuning.jobs)]
    for sync, async_ in pairs:
        sync_view, async_view = getattr(sync, view), getattr(async_, view)
        several = {"close", "with_options", "wait", "submit", "results"}  # no request, or more than one
        expected = {name for name in public_names(type(sync)) - several
                    if callable(inspect.getattr_static(type(sync), name))
                    or name in {"models", "files", "fine_tuning", "jobs", "batches", "responses"}}
        assert set(dir(sync_view)) == set(dir(async_view)) == expected, type(sync).__name__
    sync_client.close()
