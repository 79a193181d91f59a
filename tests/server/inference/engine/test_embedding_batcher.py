"""The embedding dynamic batcher: batched vectors equal single calls, packed or padded; a full
queue refuses at once; background calls (batch lines) give way to interactive ones."""

from __future__ import annotations

import asyncio
import threading

import pytest
import torch

from reference_server.inference.engine import packing
from reference_server.inference.engine.embeddings import EmbeddingBatcher
from reference_server.inference.engine.errors import QueueFullError
from reference_server.inference.engine.priority import running_in_background
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


async def test_similarity_is_the_cosine_of_the_vectors_both_sides_in_one_call(embedder: LoadedModel) -> None:
    query = "When does the train leave?"
    documents = ["The train departs at noon.", "Bake the bread for an hour.", "When does the train leave?"]
    batcher = EmbeddingBatcher(embedder, max_batch_size=8)
    batcher.start()
    try:
        vectors, tokens = await batcher.embed([query, *documents])
        before = batcher.stats()
        one_to_many, many_tokens = await batcher.similarity([query], documents)
        after = batcher.stats()
        pairwise, _ = await batcher.similarity(documents, [query, query, documents[2]])
        with pytest.raises(ValueError, match="one query"):
            await batcher.similarity(["a", "b"], ["c", "d", "e"])
    finally:
        await batcher.stop()
    expected = (torch.tensor(vectors[1:]) @ torch.tensor(vectors[0])).tolist()
    torch.testing.assert_close(torch.tensor(one_to_many), torch.tensor(expected), atol=VECTORS_ATOL, rtol=0)
    assert one_to_many[2] == pytest.approx(1.0, abs=1e-5) and one_to_many[0] > one_to_many[1] + 0.2
    assert many_tokens == tokens
    assert after["requests"] - before["requests"] == 1, "the query and its documents are one call"
    torch.testing.assert_close(torch.tensor(pairwise[:2]), torch.tensor(expected[:2]), atol=VECTORS_ATOL, rtol=0)


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


def test_packed_batches_give_the_padded_vectors(embedder: LoadedModel) -> None:
    """Texts of very different lengths packed into one row, positions restarting per text and
    attention kept within each: every vector equals the padded batch's, which equals the text
    alone; a forward without `packed_layout` (scoring, fine-tuning) is plain SDPA again."""
    batcher = EmbeddingBatcher(embedder)
    assert batcher.packed and embedder.model.config._attn_implementation == packing.ATTENTION
    texts = ["hi", "A cat sits on the mat.", "Two of equal size.", "Two of equal size!",
             "The quick brown fox jumps over the lazy dog " * 6]
    rows = batcher._encode(texts)
    assert len({len(r) for r in rows}) < len(rows) < sum(len(r) for r in rows) / 4  # shared lengths, one long
    with torch.inference_mode():
        packed = torch.tensor(batcher._forward(rows))
        batcher.packed = False
        padded = torch.tensor(batcher._forward(rows))
        alone = torch.tensor([batcher._forward([r])[0] for r in rows])
        plain = embedder.model(**packing.padded_inputs(rows[:2], batcher._pad_id, batcher._device)).last_hidden_state
    torch.testing.assert_close(packed, padded, atol=VECTORS_ATOL, rtol=0)
    torch.testing.assert_close(padded, alone, atol=VECTORS_ATOL, rtol=0)
    assert plain.shape[:2] == (2, max(len(r) for r in rows[:2]))
    assert batcher.stats()["tokens"] == 3 * sum(len(r) for r in rows)  # real tokens, not padding


def test_a_model_that_cannot_pack_is_batched_padded(embedder: LoadedModel) -> None:
    """Attention other than SDPA cannot take the packed path: the check says so and leaves
    the model as it was."""
    model = embedder.model
    before = model.config._attn_implementation
    model.set_attn_implementation("eager")
    try:
        assert not packing.packs_like_padding(model, embedder.tokenizer, 0, torch.device(embedder.device))
        assert model.config._attn_implementation == "eager"
        assert not EmbeddingBatcher(embedder).packed
    finally:
        model.set_attn_implementation(before)


async def test_streams_share_the_batches_and_route_every_vector(embedder: LoadedModel) -> None:
    """Two workers take batches side by side: one large call split over both and single calls
    arriving meanwhile all get their own vectors, equal to a one-stream batcher's."""
    texts = [f"Sentence number {i} is about {'cats' if i % 2 else 'the stock market'}." for i in range(40)]
    one = EmbeddingBatcher(embedder, max_batch_size=4, streams=1)
    one.start()
    try:
        reference = torch.tensor((await one.embed(texts))[0])
    finally:
        await one.stop()

    two = EmbeddingBatcher(embedder, max_batch_size=4, streams=2)
    workers: set[str] = set()
    forward = two._forward

    def recorded(rows: list[list[int]]) -> list[list[float]]:
        workers.add(threading.current_thread().name)
        return forward(rows)

    two._forward = recorded  # type: ignore[method-assign]
    two.start()
    try:
        big, *singles = await asyncio.gather(two.embed(texts), *(two.embed([t]) for t in texts[:10]))
    finally:
        await two.stop()
    torch.testing.assert_close(torch.tensor(big[0]), reference, atol=VECTORS_ATOL, rtol=0)
    torch.testing.assert_close(torch.tensor([s[0][0] for s in singles]), reference[:10], atol=VECTORS_ATOL, rtol=0)
    assert len(workers) == 2, workers
    assert two.stats()["inputs"] == 50 and two.stats()["requests"] == 11
    with pytest.raises(RuntimeError, match="not running"):
        await two.embed(["after the stop"])


async def test_an_interactive_call_runs_in_the_next_forward_before_queued_background_batches(
    embedder: LoadedModel,
) -> None:
    """A batch line's many inputs are packed into batches that wait for the worker; an interactive
    call arriving meanwhile is not queued behind them: it is in the next forward pass, and the
    background call still gets every vector."""
    texts = [f"Line {i} of a long batch file, with enough words to take the worker a moment. " * 4
             for i in range(24)]
    batcher = EmbeddingBatcher(embedder, max_batch_size=2, streams=1)
    forwards: list[list[list[int]]] = []
    forward = batcher._forward

    def recorded(rows: list[list[int]]) -> list[list[float]]:
        forwards.append(rows)
        return forward(rows)

    batcher._forward = recorded  # type: ignore[method-assign]
    batcher.start()
    try:
        with running_in_background():
            background = asyncio.ensure_future(batcher.embed(texts))
        await wait_until(lambda: len(forwards) >= 1)  # the line's batches are packed and queued
        started = len(forwards)
        interactive, _ = await batcher.embed(["an interactive question"])
        still_running = not background.done()
        vectors, _ = await background
    finally:
        await batcher.stop()
    question = batcher._encode(["an interactive question"])[0]
    position = next(i for i, rows in enumerate(forwards) if question in rows)
    # `started` is read just before the call is queued: a forward may begin in between.
    assert position <= started + 1, f"forward {position}; {started} had started when it arrived"
    assert still_running and len(forwards) == len(texts) // 2 + 1
    assert len(vectors) == len(texts) and len(interactive) == 1
