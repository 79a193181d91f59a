"""Fine-tuned classifiers served on the base encoder's batcher, on the real encoder in float32:
a classifier's rows inside a batch shared with embedding rows and other classifiers' rows get
the labels and scores of the same classifier merged into the encoder and run alone (to 1e-4);
the resident classifiers are bounded and least recently used out; a corrupt one fails its own
requests only."""

from __future__ import annotations

import asyncio
import math
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio
import torch

from reference_server.inference.engine.embeddings import ClassifierInput, EmbeddingBatcher
from reference_server.inference.engine.errors import AdapterUnusableError
from reference_server.inference.engine.heads import ClassifierSource
from reference_server.inference.loading import LoadedModel
from reference_server.inference.loading.sources import resolve_source
from reference_server.training.random_adapters import write_random_classifier

# Writes and merges classifiers of the real encoder (about 20 s): make test runs it, make test-fast does not.
pytestmark = pytest.mark.slow

TEXTS = ["I loved every minute of it.", "The delivery was late and the box was crushed.",
         "An ordinary afternoon, nothing to report at all, just the usual errands and a walk.", "Meh."]
PAIRS: list[ClassifierInput] = [("When does the museum open?", "The museum opens at nine every morning."),
                                ("Who owns the bakery?", "Bread is baked before dawn.")]
LABELS = [("negative", "positive"), ("billing", "delivery", "praise"), ("irrelevant", "relevant")]


@dataclass
class Classifiers:
    sources: list[ClassifierSource]
    alone: dict[str, list[list[float]]]  # classifier 0 merged, each input run alone: its logits


def softmax(row: list[float]) -> list[float]:
    top = max(row)
    exps = [math.exp(v - top) for v in row]
    return [e / sum(exps) for e in exps]


@pytest.fixture(scope="module")
def classifiers(embedder: LoadedModel, tmp_path_factory: pytest.TempPathFactory) -> Classifiers:
    """Three random classifiers of the real encoder (PEFT folders with their heads), and the
    logits of the first one merged into the encoder by PEFT's `merge_and_unload`, input by input."""
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    root = tmp_path_factory.mktemp("classifiers")
    folder, _ = resolve_source(embedder.spec)
    sources = [ClassifierSource(f"ft:classifier-{i}", write_random_classifier(folder, root / f"c{i}", labels, seed=i),
                                labels=labels) for i, labels in enumerate(LABELS)]
    base = AutoModelForSequenceClassification.from_pretrained(str(folder), num_labels=len(LABELS[0]),
                                                              local_files_only=True, dtype=torch.float32)
    merged = PeftModel.from_pretrained(base, str(sources[0].path)).merge_and_unload().eval()
    tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    alone: dict[str, list[list[float]]] = {"texts": [], "pairs": []}
    with torch.no_grad():
        for key, inputs in (("texts", TEXTS), ("pairs", PAIRS)):
            for item in inputs:
                first, second = (item, None) if isinstance(item, str) else item
                enc = tokenizer(first, second, return_tensors="pt")
                alone[key].append(merged(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"],
                                         token_type_ids=torch.zeros_like(enc["input_ids"])).logits[0].tolist())
    return Classifiers(sources, alone)


@pytest_asyncio.fixture(loop_scope="session")
async def batcher(embedder: LoadedModel) -> AsyncIterator[EmbeddingBatcher]:
    engine = EmbeddingBatcher(embedder, streams=1, max_loras=2)
    engine.start()
    try:
        yield engine
    finally:
        await engine.stop()


def check_equal(logits: list[list[float]], alone: list[list[float]]) -> None:
    assert torch.allclose(torch.tensor(logits), torch.tensor(alone), atol=1e-4, rtol=0)
    assert [row.index(max(row)) for row in logits] == [row.index(max(row)) for row in alone]
    for row, reference in zip(logits, alone):
        assert softmax(row) == pytest.approx(softmax(reference), abs=1e-4)


@pytest.mark.asyncio(loop_scope="session")
async def test_classifier_rows_in_a_mixed_batch_equal_the_merged_classifier_alone(
        batcher: EmbeddingBatcher, classifiers: Classifiers) -> None:
    first, second, third = classifiers.sources
    for source in (first, second):
        batcher.adapters.load(source)  # resident: the calls below queue at once and share batches
    before = batcher.stats()["batches"]
    embedded, texts, other, pairs, more = await asyncio.gather(
        batcher.embed(TEXTS), batcher.classify(TEXTS, first), batcher.classify(TEXTS, second),
        batcher.classify(PAIRS, first), batcher.embed(TEXTS[::-1]))
    # The first call may have started alone; every later one shared one forward.
    assert batcher.stats()["batches"] - before <= 2
    check_equal(texts[0], classifiers.alone["texts"])
    check_equal(pairs[0], classifiers.alone["pairs"])
    assert texts[1] == embedded[1] and pairs[1] > 0  # the tokens read
    assert len(other[0]) == len(TEXTS) and all(len(row) == 3 for row in other[0])
    assert not torch.allclose(torch.tensor(other[0])[:, :2], torch.tensor(texts[0]), atol=1e-2)
    alone_vectors, _ = await batcher.embed(TEXTS)
    assert torch.allclose(torch.tensor(embedded[0]), torch.tensor(alone_vectors), atol=1e-5)
    assert torch.allclose(torch.tensor(more[0]), torch.tensor(alone_vectors[::-1]), atol=1e-5)

    # A third classifier through a two-slot cache: the least recently used (the second; the
    # first was used last) is evicted, and read again when asked for, with the same result.
    await batcher.classify(TEXTS, third)
    assert (batcher.adapters.resident, batcher.adapters.evictions) == (2, 1)
    assert batcher.adapters.holds(first.name) and not batcher.adapters.holds(second.name)
    again, _ = await batcher.classify(TEXTS, second)
    assert torch.allclose(torch.tensor(again), torch.tensor(other[0]), atol=1e-5)


@pytest.mark.asyncio(loop_scope="session")
async def test_a_corrupt_classifier_fails_its_own_requests_only(
        batcher: EmbeddingBatcher, classifiers: Classifiers, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(classifiers.sources[0].path, broken)
    (broken / "adapter_model.safetensors").write_bytes(b"not a safetensors file")
    source = ClassifierSource("ft:broken", broken, labels=LABELS[0])
    with pytest.raises(AdapterUnusableError):
        await batcher.classify(TEXTS, source)
    with pytest.raises(AdapterUnusableError):  # remembered: not read again
        await batcher.classify(TEXTS, source)
    wrong_labels = ClassifierSource("ft:wrong-labels", classifiers.sources[1].path, labels=LABELS[0])
    with pytest.raises(AdapterUnusableError):  # a three-label head served with two labels
        await batcher.classify(TEXTS, wrong_labels)
    logits, _ = await batcher.classify(TEXTS, classifiers.sources[0])
    check_equal(logits, classifiers.alone["texts"])
