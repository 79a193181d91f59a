"""The embedding dynamic batcher: batched vectors equal single calls; a full queue refuses at once."""

from __future__ import annotations

import asyncio

import pytest
import torch

from reference_server.inference.engine.embeddings import EmbeddingBatcher
from reference_server.inference.engine.errors import QueueFullError
from reference_server.inference.loading import LoadedModel
from tests.constants import VECTORS_ATOL
from tests.server.inference.engine.support import wait_until


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
    torch.testing.assert_close(torch.tensor([c[0][0] for c in concurrent[:5]]), single, atol=VECTORS_ATOL, rtol=0)
    vectors, tokens = concurrent[5]
    torch.testing.assert_close(torch.tensor(vectors), single, atol=VECTORS_ATOL, rtol=0)
    assert tokens == sum(len(embedder.tokenizer(t)["input_ids"]) for t in texts)
    torch.testing.assert_close(torch.tensor(from_ids[0]), single[3], atol=VECTORS_ATOL, rtol=0)
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
