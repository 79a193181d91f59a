"""Log-likelihood of target tokens, shared by zero-shot classification and evaluation."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from reference_server.datasets.encoding import Encoded, collate, pad_id, token_batches, token_losses


def score_targets(loaded: Any, examples: Sequence[Encoded]) -> tuple[list[float], list[int], list[int]]:
    """Per example: summed negative log-likelihood of its target tokens, their count, and top-1 hits."""
    import torch

    nll: list[float] = []
    counts: list[int] = []
    hits: list[int] = []
    pad = pad_id(loaded.tokenizer)
    with torch.no_grad():
        for chunk in token_batches(examples):
            batch = {k: v.to(loaded.device) for k, v in collate(chunk, pad).items()}
            a, b, c = token_losses(loaded.model, batch)
            nll += a.tolist()
            counts += b.tolist()
            hits += c.tolist()
    return nll, counts, hits
