"""Per-row matchers and the one batched masking step the engine runs before sampling.

Each constrained request carries a `RowConstraint` (its own grammar matcher, in its own
state). At every step the engine passes the batch's rows to `apply_constraints`, which fills
one token bitmask for all constrained rows at once (in C++, several threads) and applies it
to their logits in place; free rows of the same batch are not touched. After sampling, each
matcher advances by its row's token.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

_batch_matcher: Any = None


class RowConstraint:
    """The grammar state of one request."""

    def __init__(self, matcher: Any) -> None:
        self.matcher = matcher

    def accept(self, token: int) -> bool:
        """Advance by the sampled token; False if the grammar forbids it (a bug or a bad mask)."""
        return bool(self.matcher.accept_token(token))

    @property
    def terminated(self) -> bool:
        """The grammar is complete and its stop token was accepted."""
        return bool(self.matcher.is_terminated())


def apply_constraints(logits: torch.Tensor, constraints: Sequence[RowConstraint | None]) -> None:
    """Mask, in place, the tokens each constrained row's grammar forbids (`logits` is `[rows, vocab]`)."""
    import xgrammar as xgr

    rows = [i for i, c in enumerate(constraints) if c is not None and not c.terminated]
    if not rows:
        return
    bitmask = xgr.allocate_token_bitmask(len(constraints), logits.shape[-1])
    _batch().batch_fill_next_token_bitmask([constraints[i].matcher for i in rows], bitmask,  # type: ignore[union-attr]
                                           indices=rows)
    xgr.apply_token_bitmask_inplace(logits, bitmask.to(logits.device), indices=rows)


def _batch() -> Any:
    global _batch_matcher
    if _batch_matcher is None:
        import xgrammar as xgr

        _batch_matcher = xgr.BatchGrammarMatcher(max_threads=max(1, torch.get_num_threads()))
    return _batch_matcher
