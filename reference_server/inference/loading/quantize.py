"""int8 dynamic quantization of a loaded generator, in place."""

from __future__ import annotations

import warnings
from typing import Any

# Linear layers left in float by `quantize_int8`. The attention output and MLP down
# projections read activations with a few large outliers (the attention mix, the gated
# activation), which one int8 scale per batch flattens; the output head decides every token.
# On SmolLM2-135M, quantizing every Linear layer nearly triples perplexity on
# bench/data/perplexity.txt (23.6 -> 68) and keeps 30% of greedy next-token choices; keeping
# these three in float holds perplexity at 29 and 81% of the choices, and a batch of 8 still
# decodes 1.2 to 1.6 times as fast as float32 on a 2-core CPU (see docs/benchmarks.md).
INT8_KEEP_FLOAT = ("o_proj", "down_proj", "lm_head")


def quantize_int8(model: Any) -> Any:
    """Replace the nn.Linear layers (but those named in INT8_KEEP_FLOAT) with dynamically quantized
    int8 versions (weights int8, activations quantized per batch), which speeds up CPU matmuls
    and cuts their memory by four.

    Uses `torch.ao.quantization.quantize_dynamic`, still present in torch 2.13 although marked
    deprecated in favour of the separate torchao package, which is not a dependency here.
    """
    import torch

    chosen = {
        name
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) and name.rsplit(".", 1)[-1] not in INT8_KEEP_FLOAT
    }
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*torch\.ao\.quantization is deprecated.*")
        warnings.filterwarnings("ignore", message=r".*quantized tensor creation functions.*")
        warnings.filterwarnings("ignore", message=r"(?s).*migrate to use torchao.*")
        quantize: Any = torch.ao.quantization.quantize_dynamic  # untyped in torch
        return quantize(model, chosen, dtype=torch.qint8, inplace=True)  # no float copy kept


