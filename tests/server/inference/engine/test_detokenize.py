"""Incremental detokenization and stop matching."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import pytest
import pytest_asyncio

from reference_server.inference.engine.detokenize import IncrementalDetokenizer, StopMatcher
from reference_server.inference.engine.generation import (
    GenerationEngine,
    GenerationHandle,
)
from reference_server.inference.engine.sampling import SamplingParams
from reference_server.inference.loading import LoadedModel

QUESTIONS = [
    "What is the capital of France?",
    "Write a haiku about the sea.",
    "Count from 1 to 10.",
    "Tell me a joke about cats and dogs living together in harmony.",
    "hi",
]
EOS = 2  # <|im_end|> for SmolLM2


@dataclass
class Result:
    token_ids: list[int] = field(default_factory=list)
    text: str = ""
    events: list[str] = field(default_factory=list)
    finish_reason: str | None = None


async def collect(handle: GenerationHandle, on_event: Callable[[int], None] | None = None) -> Result:
    result = Result()
    async for ev in handle:
        result.token_ids += ev.token_ids
        result.text += ev.text
        result.events.append(ev.text)
        result.finish_reason = ev.finish_reason
        if on_event is not None:
            on_event(len(result.events))
    return result


def greedy(max_tokens: int = 20, **kw: object) -> SamplingParams:
    return SamplingParams(max_tokens=max_tokens, temperature=0, **kw)  # type: ignore[arg-type]


async def wait_until(check: Callable[[], bool], timeout: float = 20.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        assert loop.time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


@asynccontextmanager
async def running(loaded: LoadedModel, **kw: int) -> AsyncIterator[GenerationEngine]:
    engine = GenerationEngine(loaded, **kw)
    engine.start()
    try:
        yield engine
    finally:
        await engine.stop()


@pytest.fixture(scope="module")
def prompts(chat_prompt: Callable[[str], list[int]]) -> list[list[int]]:
    return [chat_prompt(q) for q in QUESTIONS]


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def alone(generator: LoadedModel, prompts: list[list[int]]) -> list[Result]:
    """Greedy output of each prompt decoded on its own (batch of one)."""
    async with running(generator) as engine:
        return [await collect(engine.submit(p, greedy())) for p in prompts]


def test_stop_matcher_holds_back_possible_stops() -> None:
    m = StopMatcher(["STOP", "\n\n"])
    assert m.feed("Hel") == ("Hel", False)
    assert m.feed("lo ST") == ("lo ", False)
    assert m.feed("ay\n") == ("STay", False)
    assert m.feed("\nmore") == ("", True)
    m = StopMatcher(["abc"])
    assert m.feed("xab") == ("x", False)
    assert m.flush() == "ab"


def test_incremental_detokenizer_never_splits_characters(generator: LoadedModel) -> None:
    tok = generator.tokenizer
    text = "Café ☕ naïve — 東京 🚀 done."
    ids = tok(text, add_special_tokens=False)["input_ids"]
    det = IncrementalDetokenizer(tok, [1, 2, 3], stop=[])
    deltas = [det.step([t])[0] for t in ids]
    assert all("\ufffd" not in d for d in deltas)
    assert "".join(deltas) + det.finish()[0] == text

    det = IncrementalDetokenizer(tok, [], stop=["東京"])
    out, stopped = "", False
    for t in ids:
        delta, stopped = det.step([t])
        out += delta
        if stopped:
            break
    assert stopped and out == "Café ☕ naïve — "


