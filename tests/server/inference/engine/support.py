"""What the engine tests share: the test questions, result collection, greedy parameters and a
running engine."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import torch

from reference_server.inference.engine.generation import GenerationEngine, GenerationHandle
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
async def running(loaded: LoadedModel, **kw: object) -> AsyncIterator[GenerationEngine]:
    engine = GenerationEngine(loaded, **kw)
    engine.start()
    try:
        yield engine
    finally:
        await engine.stop()


def transformers_alone(loaded: LoadedModel, prompt: list[int], tokens: int) -> list[int]:
    """Greedy tokens of plain `generate()` for one prompt, exactly `tokens` of them."""
    ids = torch.tensor([prompt], device=loaded.device)
    with torch.inference_mode():
        out = loaded.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=tokens,
                                    min_new_tokens=tokens, do_sample=False, pad_token_id=0)
    return [int(t) for t in out[0, len(prompt):]]
