"""Linear layers whose weights are pre-packed for oneDNN, for inference on CPU.

`F.linear` on a CPU hands a float matrix to a general GEMM that re-blocks the weight at every
call. For the few rows of a decode step that is far from what the memory can deliver:
measured on the 2-core development machine, the float32 linears of the default generator
read their weights at 13 GB/s for one row and 9 GB/s for eight, where a plain read of the
same bytes runs at 34-40 GB/s. A decode step reads every weight once, so that is the step.
oneDNN's packed layout stores each weight in the blocked order its kernel consumes, once at
load time; the same linears then run at 27 GB/s for one row and 20 for eight (a decode step
of the default generator: 51 to 28 ms at one sequence, 69 to 40 ms at eight).

The results differ from `F.linear` only by float rounding (another summation order). What a
CPU gains depends on its kernels, so by default (`auto`) the engine measures both layouts
on a sample of the model's own layers at load time and packs only where packing wins.
"""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from reference_server.inference.loading.spec import PackedWeights

logger = logging.getLogger("reference_server")

PACKABLE_DTYPES = (torch.float32, torch.bfloat16)
# The sample `auto` times is at least this many bytes of weights: more than a CPU's caches
# hold, so that it measures reads from memory, as a decode step does.
SAMPLE_BYTES = 64 * 2**20
REPEATS = 5


def available() -> bool:
    """Whether this torch build has oneDNN and its packed linear operators."""
    return (bool(torch.backends.mkldnn.is_available())  # type: ignore[no-untyped-call]
            and hasattr(torch.ops.mkldnn, "_reorder_linear_weight")
            and hasattr(torch.ops.mkldnn, "_linear_pointwise"))


class PackedLinear(torch.nn.Module):
    """An inference-only `nn.Linear` over a oneDNN-packed copy of its weight.

    `rows` tells oneDNN how many rows a call usually has (the engine's decode batch); any
    number of rows works.
    """

    def __init__(self, linear: torch.nn.Linear, rows: int) -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        weight = linear.weight.detach()
        self.register_buffer("packed", torch.ops.mkldnn._reorder_linear_weight(weight, rows), persistent=False)
        bias = linear.bias.detach() if linear.bias is not None else None
        self.register_buffer("bias", bias, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = torch.ops.mkldnn._linear_pointwise(x, self.packed, self.bias, "none", [], "")
        return out

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


def packable(module: Any) -> bool:
    """A plain float32 or bfloat16 `nn.Linear` on the CPU (quantized layers are other classes,
    and tensor-subclass weights keep their own kernels)."""
    if type(module) is not torch.nn.Linear:
        return False
    weight = module.weight
    return (type(weight) in (torch.Tensor, torch.nn.Parameter) and weight.device.type == "cpu"
            and weight.dtype in PACKABLE_DTYPES)


def pack_linears(model: Any, mode: PackedWeights, rows: int) -> int:
    """Replace the model's packable linears by `PackedLinear`s (see the module docstring for
    `mode`); return how many were replaced."""
    if mode == "off" or not available():
        return 0
    found = [(name, module) for name, module in model.named_modules() if packable(module)]
    if not found:
        return 0
    if mode == "auto":
        gain = _measured_gain([module for _, module in found], rows)
        if gain is None or gain <= 1.0:
            logger.info("linear weights left unpacked: packed layers measured %s", _describe(gain))
            return 0
        logger.info("linear weights packed for oneDNN: %.2fx faster on a sample of the model's layers", gain)
    for name, module in found:
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, child, PackedLinear(module, rows))
    return len(found)


def _describe(gain: float | None) -> str:
    return "different from the plain ones" if gain is None else f"{gain:.2f}x as fast"


def _measured_gain(linears: list[torch.nn.Linear], rows: int) -> float | None:
    """How many times faster a sample of `linears` runs packed than plain, over one row and
    `rows` rows together; None when the packed results differ beyond float rounding."""
    sample: list[torch.nn.Linear] = []
    size = 0
    for linear in linears:
        sample.append(linear)
        size += linear.weight.numel() * linear.weight.element_size()
        if size >= SAMPLE_BYTES:
            break
    packed = [PackedLinear(linear, rows) for linear in sample]
    plain_s = packed_s = 0.0
    with torch.inference_mode():
        for n in sorted({1, rows}):
            inputs = [torch.randn(1, n, linear.in_features, dtype=linear.weight.dtype) for linear in sample]
            for linear, fast, x in zip(sample, packed, inputs):
                if not _agree(F.linear(x, linear.weight, linear.bias), fast(x)):
                    return None
            plain_s += _time(sample, inputs)
            packed_s += _time(packed, inputs)
    return plain_s / packed_s


def _agree(expected: torch.Tensor, got: torch.Tensor) -> bool:
    tolerance = 1e-3 if expected.dtype == torch.float32 else 3e-2
    scale = float(expected.abs().max()) or 1.0
    return got.shape == expected.shape and float((got - expected).abs().max()) <= tolerance * scale


def _time(layers: Sequence[torch.nn.Module], inputs: list[torch.Tensor]) -> float:
    """Median seconds of one pass of each layer over its input."""
    times = []
    for i in range(REPEATS + 1):
        start = time.perf_counter()
        for layer, x in zip(layers, inputs):
            layer(x)
        if i:  # the first pass pays allocation and kernel selection
            times.append(time.perf_counter() - start)
    return statistics.median(times)
