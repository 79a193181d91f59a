"""`MaaS` and `AsyncMaaS` (and their resources) expose the same methods with the same signatures.

Parameters must match exactly (names, kinds, defaults, annotations); return
annotations may differ only by the async spelling of a type (`AsyncStream` for
`Stream`, `AsyncPager` for `Pager`, ...), and async methods are coroutines unless
they return an async iterator.
"""

from __future__ import annotations

import inspect
import re
from typing import Any

import pytest
from typing_extensions import get_overloads

from maas_sdk import AsyncBoundFineTuningJob, AsyncMaaS, BoundFineTuningJob, MaaS
from maas_sdk.resources import (
    AsyncFiles,
    AsyncFineTuning,
    AsyncFineTuningJobs,
    AsyncModels,
    Files,
    FineTuning,
    FineTuningJobs,
    Models,
)

PAIRS = [
    (MaaS, AsyncMaaS),
    (Models, AsyncModels),
    (Files, AsyncFiles),
    (FineTuning, AsyncFineTuning),
    (FineTuningJobs, AsyncFineTuningJobs),
]
# Spelled differently on purpose: context management.
SHELL_ONLY = {"__enter__", "__exit__", "__aenter__", "__aexit__"}


def public_names(cls: type) -> set[str]:
    return {name for name in dir(cls) if not name.startswith("_")}


def sync_spelling(annotation: str) -> str:
    return re.sub(r"\bAsync(?=[A-Z])", "", annotation)


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


def test_the_documented_surface_exists() -> None:
    expected = {
        "generate", "chat", "embed", "classify", "tokenize", "detokenize", "evaluate",
        "models", "files", "fine_tuning", "with_options", "close",
    }
    assert expected <= public_names(MaaS)
    assert {"upload", "list", "retrieve", "content", "delete"} <= public_names(Files)
    assert {"create", "list", "retrieve", "cancel", "events", "checkpoints", "wait"} <= public_names(FineTuningJobs)
    generate = inspect.signature(MaaS.generate).parameters
    assert generate["stream"].default is False
    assert generate["model"].kind is inspect.Parameter.KEYWORD_ONLY
    init = inspect.signature(MaaS.__init__).parameters
    assert [name for name in init][1:] == [
        "api_key", "base_url", "timeout", "max_retries", "http_client", "default_headers",
    ]
    assert init["max_retries"].default == 2
