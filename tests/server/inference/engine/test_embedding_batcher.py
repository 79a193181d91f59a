"""The embedding dynamic batcher: batched vectors equal single calls; a full queue refuses at once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import pytest
import pytest_asyncio
import torch

from reference_server.inference.engine.embeddings import EmbeddingBatcher
from reference_server.inference.engine.errors import QueueFullError
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


async def test_embedding_batches_match_single_calls(embedder: LoadedModel) -> None:
    texts = [
        "A cat sits on the mat.",
        "A kitten is sitting on a rug.",
        "Stock markets fell sharply today.",
        "hello",
        "The quick brown fox jumps over the lazy dog " * 5,
    ]
    batcher = EmbeddingBatcher(embedder, max_batch_size=3, max_batch_tokens=512)
    batcher.start()
    try:
        singles = [(await batcher.embed([t]))[0][0] for t in texts]
        concurrent = await asyncio.gather(*(batcher.embed([t]) for t in texts), batcher.embed(texts))
        ids = embedder.tokenizer(texts[3], add_special_tokens=False)["input_ids"]
        from_ids, id_tokens = await batcher.embed([ids])
        with pytest.raises(ValueError, match=r"input\[1\] is \d+ tokens long; .* at most 256"):
            await batcher.embed(["short", "word " * 300])
    finally:
        await batcher.stop()
    single = torch.tensor(singles)
    assert single.shape == (5, 384)
    torch.testing.assert_close(single.norm(dim=-1), torch.ones(5))
    torch.testing.assert_close(torch.tensor([c[0][0] for c in concurrent[:5]]), single, atol=1e-5, rtol=0)
    vectors, tokens = concurrent[5]
    torch.testing.assert_close(torch.tensor(vectors), single, atol=1e-5, rtol=0)
    assert tokens == sum(len(embedder.tokenizer(t)["input_ids"]) for t in texts)
    torch.testing.assert_close(torch.tensor(from_ids[0]), single[3], atol=1e-5, rtol=0)
    assert id_tokens == len(ids) + 2  # [CLS] ... [SEP]
    sims = single @ single.T
    assert sims[0, 1] > sims[0, 2] + 0.3 and sims[0, 1] > sims[1, 2] + 0.3


async def test_embedding_queue_full(embedder: LoadedModel) -> None:
    batcher = EmbeddingBatcher(embedder, max_queued=1)
    batcher.start()
    try:
        busy = asyncio.ensure_future(batcher.embed(["some text to embed, quite a few words long " * 2] * 64))
        await asyncio.sleep(0)
        await wait_until(lambda: batcher.stats()["waiting"] == 0)  # the worker is on it
        queued = asyncio.ensure_future(batcher.embed(["queued"]))
        await asyncio.sleep(0)
        with pytest.raises(QueueFullError):
            await batcher.embed(["rejected"])
        assert len((await busy)[0]) == 64 and len((await queued)[0]) == 1
    finally:
        await batcher.stop()
