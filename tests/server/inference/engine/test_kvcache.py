"""KV cache batch helpers: merged and trimmed batches decode like separate rows."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import pytest
import pytest_asyncio
import torch
from transformers import DynamicCache

from reference_server.inference.engine.generation import (
    GenerationEngine,
    GenerationHandle,
)
from reference_server.inference.engine.kvcache import PaddedBatch, left_padded, positions_from_mask
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


def test_merged_and_trimmed_batch_decodes_like_separate_rows(
    generator: LoadedModel, prompts: list[list[int]]
) -> None:
    model = generator.model

    def prefill(rows: list[list[int]]) -> PaddedBatch:
        ids, mask = left_padded(rows, 0, "cpu")
        cache = DynamicCache(config=model.config)
        out = model(
            input_ids=ids,
            attention_mask=mask,
            position_ids=positions_from_mask(mask),
            cache=cache,
            use_cache=True,
        )
        return PaddedBatch(cache, mask, mask.sum(1), out.logits[:, -1].argmax(-1))

    def step(batch: PaddedBatch) -> torch.Tensor:
        inputs = batch.step_inputs()
        logits: torch.Tensor = model(**inputs, cache=batch.cache, use_cache=True).logits[:, -1]
        batch.advance(inputs["attention_mask"], logits.argmax(-1))
        return logits

    short, long = prompts[4], prompts[3]
    with torch.inference_mode():
        a = prefill([short])
        b = prefill([long])
        ref_a, ref_b = step(a), step(b)

        merged = prefill([short])
        other = prefill([long])
        merged.merge(other)
        assert merged.mask.shape == (2, len(long)) and merged.mask[0].sum() == len(short)
        both = step(merged)
        torch.testing.assert_close(both[0], ref_a[0], atol=2e-4, rtol=0)
        torch.testing.assert_close(both[1], ref_b[0], atol=2e-4, rtol=0)

        merged.keep([0])  # the long row leaves: its padding-only columns go too
        assert merged.mask.shape == (1, len(short) + 1) and bool(merged.mask.all())
        ref_next = step(a)
        torch.testing.assert_close(step(merged)[0], ref_next[0], atol=2e-4, rtol=0)


