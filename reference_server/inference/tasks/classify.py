"""Classification, trained and zero-shot, on served models.

Classification works with three kinds of model:
- a classifier (a fine-tuned one, or any sequence-classification folder): softmax over its
  head; `labels`, if given, must be among its trained labels and the scores are renormalised
  over them;
- an embedder, zero-shot: each input and each label are embedded, and the cosine similarities,
  divided by a temperature, go through a softmax. Labels are embedded as written (on sentiment
  and topic data the bare label beat templates such as "This text is about {label}."), so a
  descriptive label ("a complaint about delivery") carries its meaning into the score;
- a generator, zero-shot: the score of a label is the log-likelihood the model gives to the
  label, followed by its end-of-turn token, as the assistant's answer to a prompt listing the
  labels; the softmax of those log-likelihoods is a distribution over the complete answers.

The heavy functions here are synchronous; routes run them in a worker thread (torch releases
the GIL while it computes, so other requests keep being served), in batches so no single
call holds a model for long.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from maas_sdk.protocol.nlu import MAX_LABELS
from reference_server.datasets.encoding import Encoded, encode_chat, encode_prompt_completion
from reference_server.inference.offload import check_cancelled
from reference_server.inference.tasks.errors import NLUError
from reference_server.inference.tasks.scoring import score_targets

# Cosine similarities of sentence embeddings differ by a few hundredths between labels; dividing
# by this temperature spreads them into scores that read as confidences.
EMBED_TEMPERATURE = 0.05
GENERATOR_PROMPT = ("Classify the text into exactly one of these categories: {labels}.\n\n"
                    "Text: {text}\n\nAnswer with the category only.")
_BATCH = 16


@dataclass
class Scored:
    """Label scores (summing to 1) for one input."""

    scores: dict[str, float]

    @property
    def label(self) -> str:
        return max(self.scores, key=lambda k: self.scores[k])


def check_labels(labels: Sequence[str] | None) -> list[str] | None:
    if labels is None:
        return None
    cleaned = [label.strip() for label in labels]
    if len(cleaned) < 2:
        raise NLUError("labels needs at least two candidate labels.", "labels")
    if len(cleaned) > MAX_LABELS:
        raise NLUError(f"labels has {len(cleaned)} entries; at most {MAX_LABELS} are allowed.", "labels")
    if any(not label for label in cleaned):
        raise NLUError("labels must not contain empty strings.", "labels")
    if len(set(cleaned)) != len(cleaned):
        raise NLUError("labels must be distinct.", "labels")
    return cleaned


def _softmax(values: Sequence[float]) -> list[float]:
    top = max(values)
    exps = [math.exp(v - top) for v in values]
    total = sum(exps)
    return [e / total for e in exps]


def trained_labels(loaded: Any) -> list[str]:
    id2label = getattr(loaded.model.config, "id2label", None) or {}
    return [str(id2label[i]) for i in sorted(id2label)]


ClassifierInput = str | tuple[str, str]


def head_logits(loaded: Any, inputs: Sequence[ClassifierInput]) -> tuple[list[list[float]], int]:
    """A classification head's logits for each input (a text, or a (text, text_pair) pair read
    together, as a cross-encoder reads them), and the tokens they took. Inputs are cut to the
    model's context; a pair loses tokens from its longer text first."""
    import torch

    paired = [not isinstance(x, str) for x in inputs]
    if any(paired) and not all(paired):
        raise NLUError("input mixes single texts and text pairs; send one kind per call.", "input")
    rows: list[list[float]] = []
    tokens = 0
    tokenizer, model = loaded.tokenizer, loaded.model
    with torch.no_grad():
        for start in range(0, len(inputs), _BATCH):
            check_cancelled()
            chunk = inputs[start:start + _BATCH]
            firsts = [x if isinstance(x, str) else x[0] for x in chunk]
            seconds = [x[1] for x in chunk if not isinstance(x, str)]
            enc = tokenizer(firsts, seconds or None, padding=True, truncation=True,
                            max_length=loaded.context_length, return_tensors="pt").to(loaded.device)
            tokens += int(enc["attention_mask"].sum())
            rows += model(**enc).logits.float().tolist()
    return rows, tokens


def check_known(known: list[str], labels: list[str] | None) -> None:
    """400 naming `labels` when it names a label the classifier was not trained on."""
    if labels is not None:
        unknown = [label for label in labels if label not in known]
        if unknown:
            raise NLUError(f"The model was trained on the labels {known}; it cannot score {unknown}.", "labels")


def scores_from_logits(known: list[str], labels: list[str] | None, logits: Sequence[Sequence[float]]) -> list[Scored]:
    """Softmax over a head's logits (its labels `known`, in order), renormalised over `labels`."""
    check_known(known, labels)
    keep = [known.index(label) for label in (labels or known)]
    return [Scored({known[i]: p for i, p in zip(keep, _softmax([row[i] for i in keep]))}) for row in logits]


def classify_with_head(loaded: Any, inputs: Sequence[ClassifierInput],
                       labels: list[str] | None) -> tuple[list[Scored], int]:
    """Softmax over a classification head; returns the scores and the prompt token count."""
    known = trained_labels(loaded)
    check_known(known, labels)
    logits, tokens = head_logits(loaded, inputs)
    return scores_from_logits(known, labels, logits), tokens


def zero_shot_by_similarity(vectors: Sequence[Sequence[float]], n_inputs: int, labels: list[str]) -> list[Scored]:
    """Scores from the embeddings of the inputs followed by those of the labels (unit vectors)."""
    label_vectors = vectors[n_inputs:]
    results = []
    for vector in vectors[:n_inputs]:
        sims = [sum(a * b for a, b in zip(vector, lv)) for lv in label_vectors]
        results.append(Scored(dict(zip(labels, _softmax([s / EMBED_TEMPERATURE for s in sims])))))
    return results


def _answer_example(loaded: Any, text: str, labels: Sequence[str], label: str) -> Encoded:
    prompt = GENERATOR_PROMPT.format(labels=", ".join(labels), text=text)
    limit = loaded.context_length
    if getattr(loaded.tokenizer, "chat_template", None):
        return encode_chat(loaded.tokenizer, [{"role": "user", "content": prompt},
                                              {"role": "assistant", "content": label}], limit)
    return encode_prompt_completion(loaded.tokenizer, prompt + "\nCategory: ", label, limit)


def zero_shot_by_likelihood(loaded: Any, inputs: Sequence[str], labels: list[str]) -> tuple[list[Scored], int]:
    examples: list[Encoded] = []
    for text in inputs:
        check_cancelled()
        examples += [_answer_example(loaded, text, labels, label) for label in labels]
    if any(e.target_tokens == 0 for e in examples):
        raise NLUError(f"An input is too long for the model's {loaded.context_length}-token context.", "input")
    loglik, _, _ = score_targets(loaded, examples)
    results = []
    for i in range(len(inputs)):
        row = [-loglik[i * len(labels) + j] for j in range(len(labels))]
        results.append(Scored(dict(zip(labels, _softmax(row)))))
    return results, sum(len(e.input_ids) for e in examples)
