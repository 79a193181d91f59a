"""Fixtures of the engine tests: the chat-rendered test prompts and their outputs alone."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import pytest_asyncio
import torch

from reference_server.inference.loading import LoadedModel, load_model
from tests.server.inference.engine.support import QUESTIONS, Result, collect, greedy, running


@pytest.fixture(scope="module")
def prompts(chat_prompt: Callable[[str], list[int]]) -> list[list[int]]:
    return [chat_prompt(q) for q in QUESTIONS]


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def alone(generator: LoadedModel, prompts: list[list[int]]) -> list[Result]:
    """Greedy output of each prompt decoded on its own (batch of one, whole-prompt prefill, no
    prefix reuse): the reference every batched, sliced or reused run must equal."""
    async with running(generator, prefill_chunk_tokens=0, prefix_cache_bytes=0) as engine:
        return [await collect(engine.submit(p, greedy())) for p in prompts]


@pytest.fixture(scope="module")
def generator_in(generator: LoadedModel, cache_dir: Path) -> Callable[[str], LoadedModel]:
    """The default generator in a given dtype ("float32", "bfloat16"): the session's own where it
    has that dtype, else a copy loaded once per module."""
    loaded = {generator.model.dtype: generator}

    def load(dtype: str) -> LoadedModel:
        wanted = getattr(torch, dtype)
        if wanted not in loaded:
            spec = generator.spec.model_copy()
            spec.dtype = dtype  # type: ignore[assignment]
            loaded[wanted] = load_model(spec, cache_dir=cache_dir, device=generator.device)
        return loaded[wanted]

    return load
