"""Log-likelihood of target tokens, shared by zero-shot classification and evaluation.

Scored in modest batches, checking between them whether the caller has gone
(`offload.check_cancelled`), so abandoned work stops within a batch."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from reference_server.datasets.encoding import Encoded, collate, pad_id, token_batches, token_losses
from reference_server.inference.offload import check_cancelled

# Padded tokens scored in one forward pass: small enough that a request whose client has gone
# stops within a second or two on a CPU, large enough to keep the batch efficient.
BATCH_TOKENS = 1024


def score_targets(loaded: Any, examples: Sequence[Encoded]) -> tuple[list[float], list[int], list[int]]:
    """Per example: summed negative log-likelihood of its target tokens, their count, and top-1 hits."""
    import torch

    nll: list[float] = []
    counts: list[int] = []
    hits: list[int] = []
    pad = pad_id(loaded.tokenizer)
    with torch.no_grad():
        for chunk in token_batches(examples, max_tokens=BATCH_TOKENS):
            check_cancelled()
            batch = {k: v.to(loaded.device) for k, v in collate(chunk, pad).items()}
            a, b, c = token_losses(loaded.model, batch)
            nll += a.tolist()
            counts += b.tolist()
            hits += c.tolist()
    return nll, counts, hits
