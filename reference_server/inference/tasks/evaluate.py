"""Evaluation of a served model on a labelled file: accuracy and macro-F1 for classifiers, loss
and perplexity for generators, measured on the completion tokens as fine-tuning measures them."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from reference_server import datasets
from reference_server.datasets.encoding import encode_generation_record
from reference_server.inference.tasks.classify import (
    ClassifierInput,
    head_logits,
    scores_from_logits,
    trained_labels,
)
from reference_server.inference.tasks.errors import NLUError
from reference_server.inference.tasks.scoring import score_targets


def evaluate(loaded: Any, task: str, info: datasets.DatasetInfo,
             records: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """`accuracy` and macro `f1` for a classifier on classification data; `loss` (mean negative
    log-likelihood per completion token, as training reports it) and `perplexity` for a
    generator on chat or prompt/completion data."""
    if task == "classify":
        logits, _ = head_logits(loaded, classifier_inputs(info, records))
        return classifier_metrics(records, trained_labels(loaded), logits)
    if task == "generate":
        if info.format not in datasets.GENERATION_FORMATS:
            raise NLUError("A generator is evaluated on chat or prompt/completion data; the file holds "
                           "classification data.", "file")
        examples = [encode_generation_record(loaded.tokenizer, r, loaded.context_length) for r in records]
        nll, counts, hits = score_targets(loaded, [e for e in examples if e.target_tokens])
        tokens = sum(counts)
        if tokens == 0:
            raise NLUError("No example has completion tokens within the model's context.", "file")
        loss = sum(nll) / tokens
        return {"loss": loss, "perplexity": math.exp(min(loss, 700.0)), "token_accuracy": sum(hits) / tokens}
    raise NLUError("Evaluation needs a classifier or a generator; this model serves embeddings.", "model")


def classifier_inputs(info: datasets.DatasetInfo, records: Sequence[Mapping[str, Any]]) -> list[ClassifierInput]:
    """A classification file's inputs (texts, or text pairs); 400 naming `file` for other data."""
    if info.format != "classification":
        raise NLUError(f"A classifier is evaluated on classification data; the file holds {info.format} data.",
                       "file")
    return [(str(r["text"]), str(r["text_pair"])) if info.pairs else str(r["text"]) for r in records]


def classifier_metrics(records: Sequence[Mapping[str, Any]], known: list[str],
                       logits: Sequence[Sequence[float]]) -> dict[str, float]:
    """Accuracy and macro F1 of a head (labels `known`) whose logits for `records` are `logits`."""
    scored = scores_from_logits(known, None, logits)
    return classification_metrics([datasets.label_of(dict(r)) for r in records], [s.label for s in scored])


def classification_metrics(truth: Sequence[str], predicted: Sequence[str]) -> dict[str, float]:
    """Accuracy, and F1 averaged over every label seen in either list (macro, as scikit-learn does)."""
    accuracy = sum(t == p for t, p in zip(truth, predicted)) / len(truth)
    f1s = []
    for label in sorted(set(truth) | set(predicted)):
        tp = sum(t == label and p == label for t, p in zip(truth, predicted))
        fp = sum(t != label and p == label for t, p in zip(truth, predicted))
        fn = sum(t == label and p != label for t, p in zip(truth, predicted))
        f1s.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    return {"accuracy": accuracy, "f1": sum(f1s) / len(f1s)}
