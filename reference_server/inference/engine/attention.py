"""The engines' own attention functions, installed into transformers models by name.

An engine replaces a model's attention only for its own forwards: each function is called with
one extra keyword argument (the engine's layout of the batch) and falls back to the model's
SDPA, masks and all, in every forward that does not pass it (`generate()`, scoring, training).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

# fn(layout, module, query, key, value, scaling) -> attention output `[batch, tokens, heads, head_dim]`
Attend = Callable[[Any, Any, torch.Tensor, torch.Tensor, torch.Tensor, float | None], torch.Tensor]


def install(model: Any, name: str, argument: str, attend: Attend) -> bool:
    """Register `attend` as attention `name`, used where a forward passes `argument=`, and make it
    the model's; False (nothing changed) if the model uses attention other than SDPA."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    implementation = getattr(model.config, "_attn_implementation", None)
    if implementation not in ("sdpa", name):
        return False

    def attention(module: Any, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                  attention_mask: torch.Tensor | None, dropout: float = 0.0, scaling: float | None = None,
                  **kwargs: Any) -> tuple[torch.Tensor, None]:
        layout = kwargs.pop(argument, None)
        if layout is None:
            from transformers.integrations.sdpa_attention import sdpa_attention_forward

            return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout,
                                          scaling=scaling, **kwargs)
        return attend(layout, module, query, key, value, scaling), None

    AttentionInterface.register(name, attention)
    AttentionMaskInterface.register(name, sdpa_mask)
    if implementation != name:
        model.set_attn_implementation(name)
    return True
