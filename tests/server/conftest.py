"""Real models for the engine and loading tests, each loaded once per test session.

The conversion cache is shared with the server (`MAAS_CACHE_DIR`, default ~/.cache/maas), so
the GGUF generator is converted at most once per machine rather than once per run.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from reference_server.inference.loading import (
    LoadedModel,
    ModelSpec,
    configure_threads,
    default_specs,
    load_model,
)
from tests.constants import DEVICE, DTYPE


@pytest.fixture(scope="session")
def cache_dir() -> Path:
    return Path(os.environ.get("MAAS_CACHE_DIR", "~/.cache/maas")).expanduser()


def _default(task: str) -> ModelSpec:
    return next(s for s in default_specs() if s.task == task)


@pytest.fixture(scope="session")
def torch_threads() -> Iterator[int]:
    """One compute thread by default (`MAAS_TEST_THREADS` to change): on a small shared machine,
    more threads than free cores make every forward pass wait on busy cores."""
    previous = configure_threads(None)
    yield configure_threads(int(os.environ.get("MAAS_TEST_THREADS", "1")))
    configure_threads(previous)


@pytest.fixture(scope="session")
def generator(cache_dir: Path, torch_threads: int) -> LoadedModel:
    """The default generator in float32 (whatever `auto` picks on this CPU): the engine tests
    compare greedy tokens exactly across batch shapes, which bfloat16's coarser rounding would
    turn into near-ties decided by the shape."""
    spec = _default("generate")
    spec.dtype = DTYPE  # type: ignore[assignment]
    return load_model(spec, cache_dir=cache_dir, device=DEVICE)


@pytest.fixture(scope="session")
def embedder(cache_dir: Path, torch_threads: int) -> LoadedModel:
    """The default embedder in float32, for the same reason: its tests compare vectors closely."""
    spec = _default("embed")
    spec.dtype = DTYPE  # type: ignore[assignment]
    return load_model(spec, cache_dir=cache_dir, device=DEVICE)


@pytest.fixture(scope="session")
def chat_prompt(generator: LoadedModel) -> Callable[[str], list[int]]:
    """Token ids of a one-turn chat asking `question`, ready for generation."""

    def render(question: str) -> list[int]:
        ids = generator.tokenizer.apply_chat_template(
            [{"role": "user", "content": question}], add_generation_prompt=True, return_dict=False
        )
        return [int(t) for t in ids]

    return render
