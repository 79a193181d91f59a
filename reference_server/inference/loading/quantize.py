"""Weight-only quantization of a loaded generator (CPU), in place: int8, or int4 + int8.

Decoding one sequence on a CPU is bound by reading the weights from memory, so storing them
in fewer bits speeds it up as long as the matmul reads the small weights directly instead
of first unpacking them to float (torchao's generic int8 weight-only path does the latter,
and on a 2-core CPU it decodes slower than plain bfloat16). So:

- `int8`: every Linear layer's weight is int8 with one scale per output channel (symmetric,
  torchao's `choose_qparams_affine` / `quantize_affine`), multiplied by
  `torch._weight_int8pack_mm`, which reads int8 weights and bfloat16 activations;
- `int4`: the decoder's Linear layers are int4 in groups of 32 with a scale and zero point per
  group (torchao's CPU int4 weight-only tensor, run by the tinygemm kernel
  `_weight_int4pack_mm_for_cpu`), the embedding table and output head stay int8.

Both kernels take bfloat16 inputs (float32 ones take a slow path). For int8 the rest of the
model (norms, attention, residual stream) stays float32 and only each matmul's input is
rounded to bfloat16, which keeps greedy text close to float32's; int4 runs in bfloat16.
The input embedding and the output head share one tensor in small models (SmolLM2 ties
them), so both are replaced by views of one int8 table: an embedding lookup scales the rows
it picks, the head multiplies by the whole table. Quantizing the head matters: it is a fifth
of this model's weights and read in full for every token.

Measured on SmolLM2-135M, see docs/benchmarks.md (`bench/quantization.py`).
"""

from __future__ import annotations

import logging
from typing import Any, Literal

import torch
import torch.nn.functional as F

Quantization = Literal["int8", "int4"]
# Weights of one int4 group share a scale and zero point (torchao's CPU kernel takes 32..128).
INT4_GROUP_SIZE = 32
# What both CPU kernels take on their fast path: the inputs of the quantized matmuls.
QUANTIZED_DTYPE = torch.bfloat16


def int8_per_channel(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric int8 weights with one scale per output row (dim 0), via torchao's primitives."""
    from torchao.quantization.quant_primitives import MappingType, choose_qparams_affine, quantize_affine  # type: ignore[import-untyped]

    w = weight.detach().float()
    block = (1, w.shape[1])
    scale, zero = choose_qparams_affine(w, MappingType.SYMMETRIC, block, torch.int8, quant_min=-127,
                                     quant_max=127, eps=1e-8, scale_dtype=torch.float32)
    q = quantize_affine(w, block, scale, zero, torch.int8, quant_min=-127, quant_max=127)
    return q.contiguous(), scale.reshape(-1)


class Int8Linear(torch.nn.Module):
    """y = x @ (q * scale).T + bias, with q int8 [out, in] and scale [out]; `torch._weight_int8pack_mm`
    reads q as int8 (no float copy of the weight is ever made)."""

    qweight: torch.Tensor
    scale: torch.Tensor

    def __init__(self, qweight: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor | None) -> None:
        super().__init__()
        self.in_features, self.out_features = int(qweight.shape[1]), int(qweight.shape[0])
        self.register_buffer("qweight", qweight)
        self.register_buffer("scale", scale.to(QUANTIZED_DTYPE))
        self.bias = None if bias is None else torch.nn.Parameter(bias.detach().to(QUANTIZED_DTYPE),
                                                                requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        flat = x.reshape(-1, self.in_features).to(QUANTIZED_DTYPE).contiguous()
        y = torch._weight_int8pack_mm(flat, self.qweight, self.scale)
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*shape[:-1], self.out_features).to(x.dtype)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8 per channel"


class Int8Embedding(torch.nn.Module):
    """An embedding table stored as int8 rows with one scale per row (the tied head's tensors)."""

    qweight: torch.Tensor
    scale: torch.Tensor

    def __init__(self, qweight: torch.Tensor, scale: torch.Tensor, padding_idx: int | None,
                 out_dtype: torch.dtype) -> None:
        super().__init__()
        self.num_embeddings, self.embedding_dim = int(qweight.shape[0]), int(qweight.shape[1])
        self.padding_idx = padding_idx
        self.out_dtype = out_dtype
        self.register_buffer("qweight", qweight)
        self.register_buffer("scale", scale.to(QUANTIZED_DTYPE))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        rows = F.embedding(ids, self.qweight).to(self.out_dtype)
        return rows * self.scale[ids].unsqueeze(-1).to(self.out_dtype)


def quantize_weights(model: Any, method: Quantization) -> Any:
    """Quantize `model` in place and return it (int4: loaded in bfloat16)."""
    head = model.get_output_embeddings()
    embed = model.get_input_embeddings()
    tied = head is not None and embed is not None and head.weight is embed.weight
    if method == "int4":
        _int4_decoder(model, skip={id(head)})
    _int8_linears(model)
    if tied:  # the head became an Int8Linear; the embedding reads the same int8 table
        new_head = model.get_output_embeddings()
        model.set_input_embeddings(Int8Embedding(new_head.qweight, new_head.scale, embed.padding_idx,
                                                 embed.weight.dtype))
    return model


def _int8_linears(model: Any) -> None:
    """Every remaining float `nn.Linear` becomes an `Int8Linear`."""
    for name, module in list(model.named_modules()):
        if type(module) is not torch.nn.Linear or not module.weight.is_floating_point():
            continue
        if _is_tensor_subclass(module.weight):  # already int4
            continue
        q, scale = int8_per_channel(module.weight)
        _replace(model, name, Int8Linear(q, scale, module.bias))


def _int4_decoder(model: Any, skip: set[int]) -> None:
    from torchao.prototype.quantization.int4.inference_workflow import (  # type: ignore[import-untyped]
        PrototypeInt4WeightOnlyConfig,
    )
    from torchao.quantization import quantize_  # type: ignore[import-untyped]

    logging.getLogger("torchao").setLevel(logging.ERROR)  # it logs every layer it skips
    config = PrototypeInt4WeightOnlyConfig(group_size=INT4_GROUP_SIZE, set_inductor_config=False)
    quantize_(model, config, filter_fn=lambda m, _: isinstance(m, torch.nn.Linear) and id(m) not in skip
              and m.in_features % INT4_GROUP_SIZE == 0)


def _is_tensor_subclass(t: torch.Tensor) -> bool:
    return type(t) not in (torch.Tensor, torch.nn.Parameter)


def _replace(model: Any, name: str, module: torch.nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)
