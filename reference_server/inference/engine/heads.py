"""Fine-tuned classifiers served on their base encoder's batcher: a LoRA adapter of the encoder
plus the classification head trained with it.

A classifier job on a BERT-style encoder trains LoRA on the encoder's projections and, fully,
the two modules of the sequence classifier that sit above it (PEFT's `modules_to_save`): the
pooler (`pooler.dense`, tanh over the first token's hidden state) and the classifier
(`classifier`, one linear layer to the labels). Its PEFT folder is all a served classifier
costs: the encoder is the base model's, shared by every classifier on it and by embedding
requests. A row of a classifier runs through the encoder with its adapter's update (`lora.py`,
as generators' rows do), and its first token's hidden state through its own head
(`head_logits`).

The resident classifiers are an `AdapterCache` (bounded, least recently used out, loaded off
the batcher's threads) whose entries carry their heads.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from reference_server.inference.engine.adapters import AdapterCache, AdapterSource
from reference_server.inference.engine.lora import (
    WEIGHTS_FILE,
    Adapter,
    AdapterError,
    AdapterLinear,
    read_adapter,
)

# Where the encoder sits inside the sequence classifier PEFT adapted (`BertForSequenceClassification.bert`).
ENCODER_PREFIX = "bert."
_HEAD_KEYS = {"classifier.weight", "classifier.bias"}
_POOLER_KEYS = {f"{ENCODER_PREFIX}pooler.dense.weight", f"{ENCODER_PREFIX}pooler.dense.bias"}


@dataclass(frozen=True, eq=False)
class ClassifierSource(AdapterSource):
    """A fine-tuned classifier's PEFT folder and the labels of its head, in logit order."""

    labels: tuple[str, ...] = ()


@dataclass(eq=False)
class ClassifierAdapter(Adapter):
    """A resident classifier: its encoder adapter, its head (`classifier` weight `[labels, hidden]`
    and bias) and its own pooler, if it trained one (else the encoder's pooler is used)."""

    classifier: tuple[torch.Tensor, torch.Tensor] = field(default_factory=lambda: (torch.empty(0), torch.empty(0)))
    pooler: tuple[torch.Tensor, torch.Tensor] | None = None


def read_classifier(source: ClassifierSource, modules: dict[str, AdapterLinear], *, hidden: int, max_rank: int,
                    dtype: torch.dtype, device: torch.device | str) -> ClassifierAdapter:
    """The classifier in `source.path`, checked to fit an encoder of width `hidden` and its labels."""
    others: dict[str, torch.Tensor] = {}
    adapter = read_adapter(source.path, source.name, modules, max_rank=max_rank, dtype=dtype, device=device,
                           prefix=ENCODER_PREFIX, others=others)
    where = source.path / WEIGHTS_FILE
    unknown = sorted(set(others) - _HEAD_KEYS - _POOLER_KEYS)
    if unknown:
        raise AdapterError(f"{where} holds {unknown[0]!r}, which is neither a LoRA weight nor a classifier head's")
    if not _HEAD_KEYS <= set(others):
        raise AdapterError(f"{where} has no classification head (classifier.weight and classifier.bias)")
    weight, bias = others["classifier.weight"], others["classifier.bias"]
    if weight.shape != (len(source.labels), hidden) or bias.shape != (len(source.labels),):
        raise AdapterError(f"{where}: the classifier head has shape {tuple(weight.shape)}, which does not fit "
                           f"{len(source.labels)} labels on an encoder of width {hidden}")
    pooler = None
    if _POOLER_KEYS <= set(others):
        pw, pb = others[f"{ENCODER_PREFIX}pooler.dense.weight"], others[f"{ENCODER_PREFIX}pooler.dense.bias"]
        if pw.shape != (hidden, hidden) or pb.shape != (hidden,):
            raise AdapterError(f"{where}: the pooler has shape {tuple(pw.shape)}, not ({hidden}, {hidden})")
        pooler = (pw.to(device=device, dtype=dtype), pb.to(device=device, dtype=dtype))
    tensors = [weight, bias, *(pooler or ())]
    if not all(bool(torch.isfinite(t).all()) for t in tensors):
        raise AdapterError(f"{where}: the classifier head holds values that are not finite")
    return ClassifierAdapter(name=adapter.name, rank=adapter.rank, weights=adapter.weights,
                             classifier=(weight.to(device=device, dtype=dtype), bias.to(device=device, dtype=dtype)),
                             pooler=pooler)


def encoder_projections(wrapped: dict[str, AdapterLinear]) -> dict[str, AdapterLinear]:
    """The wrapped projections an encoder adapter may target: the encoder layers', not the
    pooler's (a classifier trains its pooler whole, and the pooler runs on first tokens only)."""
    return {path: module for path, module in wrapped.items() if not path.startswith("pooler.")}


class ClassifierCache(AdapterCache):
    """The resident classifiers of one encoder: `AdapterCache`, whose entries are `ClassifierAdapter`s."""

    def __init__(self, modules: dict[str, AdapterLinear], *, hidden: int, max_loras: int, max_rank: int, dtype: torch.dtype,
                 device: torch.device) -> None:
        super().__init__(modules, max_loras=max_loras, max_rank=max_rank, dtype=dtype, device=device)
        self.hidden = hidden

    def _read(self, source: AdapterSource) -> Adapter:
        if not isinstance(source, ClassifierSource):
            raise AdapterError(f"{source.name} is not a classifier")
        start = time.perf_counter()
        adapter = read_classifier(source, self._modules, hidden=self.hidden, max_rank=self.max_rank,
                                  dtype=self._dtype, device=self._device)
        with self._timings_lock:
            self.load_seconds.append(time.perf_counter() - start)
        return adapter


def head_logits(encoder: Any, first_tokens: torch.Tensor, heads: Sequence[ClassifierAdapter]) -> torch.Tensor:
    """Logits `[rows, labels]` (float32, labels padded with -inf to the widest head) of rows whose
    first-token hidden states are `first_tokens` `[rows, hidden]`, each through its own head:
    its pooler (or the encoder's), then its classifier."""
    width = max(len(h.classifier[1]) for h in heads)
    out = torch.full((len(heads), width), float("-inf"), dtype=torch.float32, device=first_tokens.device)
    groups: dict[int, list[int]] = {}
    for row, head in enumerate(heads):
        groups.setdefault(id(head), []).append(row)
    for rows in groups.values():
        head = heads[rows[0]]
        index = torch.tensor(rows, device=first_tokens.device)
        states = first_tokens.index_select(0, index)
        if head.pooler is not None:
            pooled = torch.tanh(torch.nn.functional.linear(states.to(head.pooler[0].dtype), *head.pooler))
        else:
            pooled = encoder.pooler(states[:, None, :])
        logits = torch.nn.functional.linear(pooled.to(head.classifier[0].dtype), *head.classifier)
        out[index, : logits.shape[-1]] = logits.float()
    return out
