"""End to end: embeddings with the real MiniLM model, and the models routes."""

from __future__ import annotations

import math

import pytest

from maas_sdk import AsyncMaaS, BadRequestError, Embeddings, MaaS, NotFoundError
from tests.constants import EMBEDDER, GENERATOR


def cosine(a: list, b: list) -> float:
    dot = sum(x * y for x, y in zip(a, b))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


def test_paraphrases_are_closer_than_unrelated(client: MaaS) -> None:
    result = client.embed(
        ["A man is playing a guitar.", "Someone strums a guitar.", "The stock market fell sharply today."],
        model=EMBEDDER,
    )
    assert isinstance(result, Embeddings)
    a, b, c = result.vectors
    assert len(a) == 384
    assert abs(sum(x * x for x in a) - 1.0) < 1e-3, "vectors are L2-normalised"
    assert cosine(a, b) > cosine(a, c) + 0.2
    assert result.usage is not None and result.usage.prompt_tokens > 0


def test_single_string_and_base64(client: MaaS) -> None:
    one = client.embed("hello world", model=EMBEDDER)
    assert len(one.vectors) == 1
    raw = client.embed("hello world", model=EMBEDDER, encoding_format="base64")
    import array
    import base64

    decoded = array.array("f", base64.b64decode(raw.data[0].embedding))  # type: ignore[arg-type]
    assert max(abs(x - y) for x, y in zip(decoded, one.vectors[0])) < 1e-6


def test_embedding_errors(client: MaaS) -> None:
    with pytest.raises(BadRequestError) as info:
        client.embed([], model=EMBEDDER)
    assert info.value.param == "input"
    with pytest.raises(BadRequestError) as info:
        client.embed("hi", model=GENERATOR)
    assert info.value.param == "model"
    with pytest.raises(NotFoundError):
        client.embed("hi", model="missing-model")


def test_models_list_and_retrieve(client: MaaS) -> None:
    listed = client.models.list()
    ids = {m.id for m in listed.data}
    assert {GENERATOR, EMBEDDER} <= ids
    model = client.models.retrieve(GENERATOR)
    assert model.id == GENERATOR
    assert model.task == "generate"
    assert model.context_length and model.context_length >= 2048
    assert model.parameters and 100_000_000 < model.parameters < 200_000_000
    assert model.device and model.dtype
    with pytest.raises(NotFoundError):
        client.models.retrieve("nope")


async def test_async_embed_and_models(async_client: AsyncMaaS, client: MaaS) -> None:
    sync_vec = client.embed("The cat sat on the mat.", model=EMBEDDER).vectors[0]
    result = await async_client.embed("The cat sat on the mat.", model=EMBEDDER)
    assert max(abs(x - y) for x, y in zip(result.vectors[0], sync_vec)) < 1e-5
    model = await async_client.models.retrieve(EMBEDDER)
    assert model.task == "embed"
    listed = await async_client.models.list()
    assert EMBEDDER in {m.id for m in listed.data}
