"""How relevant a text is to another, for rerank and score, with the two kinds of model that can tell.

- An embedder (a bi-encoder) embeds both texts apart; the score is the cosine similarity of the
  two vectors, from -1 to 1 (`EmbeddingBatcher.similarity`, which embeds both sides in one call).
  It judges how alike two texts are, which is how close a passage's topic is to a query's.
- A classifier fine-tuned on `{"text": query, "text_pair": passage, "label": ...}` pairs (a
  cross-encoder) reads query and passage together; the score is the probability it gives its
  relevance label (`RELEVANT_LABELS`), or the sigmoid of its only logit for a one-logit
  relevance head (as cross-encoders trained elsewhere have), from 0 to 1. Reading both texts at
  once lets it judge whether the passage answers the query, not only whether it is about the
  same thing.

Texts longer than the model takes are cut to fit, as rerank services do; a request's
`max_tokens_per_doc` cuts documents shorter still. Cutting happens at a token boundary of the
original text (through the tokenizer's offsets), so no text is re-spelt by decoding.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from reference_server.inference.tasks.classify import head_logits, trained_labels
from reference_server.inference.tasks.errors import NLUError

# The label of a pair classifier that means "the passage is relevant to the query", in the
# order they are looked for among its trained labels.
RELEVANT_LABELS = ("relevant", "1", "true", "yes")


def relevance_head(labels: list[str], model_id: str) -> int | None:
    """The logit that scores relevance among a head's `labels`: None for a one-logit head (scored
    by its sigmoid), else the index of the relevance label; 400 naming `model` for a classifier
    that has neither."""
    if len(labels) <= 1:
        return None
    for name in RELEVANT_LABELS:
        if name in labels:
            return labels.index(name)
    raise NLUError(f"The classifier '{model_id}' cannot score relevance: it has none of the labels "
                   f"{', '.join(repr(n) for n in RELEVANT_LABELS)} (its labels: {labels}). Fine-tune it on "
                   'pairs such as {"text": query, "text_pair": passage, "label": "relevant"}.', "model")


def cut(tokenizer: Any, text: str, max_tokens: int) -> str:
    """`text` cut after its first `max_tokens` tokens (special tokens not counted)."""
    if len(text.encode("utf-8")) <= max_tokens:  # every token covers at least one byte
        return text
    offsets = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    if len(offsets) <= max_tokens:
        return text
    return text[: offsets[max_tokens - 1][1]]


def fit_for_embedding(loaded: Any, queries: Sequence[str], documents: Sequence[str],
                      max_tokens_per_doc: int | None) -> tuple[list[str], list[str]]:
    """Queries and documents cut to fit the embedder's context (documents also to
    `max_tokens_per_doc`), so that the batcher takes every one of them."""
    room = loaded.context_length - loaded.tokenizer.num_special_tokens_to_add(pair=False)
    doc_room = min(room, max_tokens_per_doc) if max_tokens_per_doc else room
    return ([cut(loaded.tokenizer, q, room) for q in queries],
            [cut(loaded.tokenizer, d, doc_room) for d in documents])


def cross_encoder_scores(loaded: Any, model_id: str, queries: Sequence[str], documents: Sequence[str],
                         max_tokens_per_doc: int | None) -> tuple[list[float], int]:
    """The relevance of `documents[i]` to `queries[i]` (one query is compared with every
    document) by a pair classifier, and the tokens it read."""
    head = relevance_head(trained_labels(loaded), model_id)
    logits, tokens = head_logits(loaded, query_document_pairs(loaded.tokenizer, queries, documents,
                                                               max_tokens_per_doc))
    return relevance_from_logits(logits, head), tokens


def query_document_pairs(tokenizer: Any, queries: Sequence[str], documents: Sequence[str],
                         max_tokens_per_doc: int | None) -> list[tuple[str, str]]:
    """(query, document) for each document, the one query repeated, documents cut to `max_tokens_per_doc`."""
    if max_tokens_per_doc:
        documents = [cut(tokenizer, d, max_tokens_per_doc) for d in documents]
    return list(zip(queries if len(queries) > 1 else [queries[0]] * len(documents), documents))


def relevance_from_logits(logits: Sequence[Sequence[float]], head: int | None) -> list[float]:
    """Each pair's relevance from its logits (`relevance_head` says which one scores it)."""
    if head is None:
        return [_sigmoid(row[0]) for row in logits]
    return [_probability(row, head) for row in logits]


def _sigmoid(x: float) -> float:
    if x >= 0:
        return 1 / (1 + math.exp(-x))
    e = math.exp(x)
    return e / (1 + e)


def _probability(logits: Sequence[float], index: int) -> float:
    """The softmax of `logits` at `index`."""
    top = max(logits)
    exps = [math.exp(v - top) for v in logits]
    return exps[index] / sum(exps)
