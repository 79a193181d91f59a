"""Device and precision policy: which device, how many threads, which torch dtype a spec gets there."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING

from reference_server.inference.loading.spec import ModelSpec

if TYPE_CHECKING:
    import torch

# CPU flags (as /proc/cpuinfo names them) that give native bfloat16 arithmetic: the AVX-512
# bf16 dot products (Cooper Lake, Zen 4 and later) or the AMX tile units (Sapphire Rapids and
# later). Without either, oneDNN emulates bfloat16 and a single sequence decodes slower than
# in float32.
NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags, read from /proc/cpuinfo at run time (empty where there is none)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo ("unknown" where there is none)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown"
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name":
            return value.strip()
    return "unknown"


def configure_threads(n: int | None) -> int:
    """Set the intra-op thread count torch uses for inference (None keeps the current one).

    Returns the effective count, so callers can report it.
    """
    import torch

    if n is not None:
        if n < 1:
            raise ValueError(f"thread count must be >= 1, got {n}")
        torch.set_num_threads(n)
    return int(torch.get_num_threads())


def resolve_device(device: str | None = None) -> str:
    """CUDA when available, else CPU; an explicit `device` wins."""
    import torch

    if device is not None:
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


def auto_dtype(device: str, flags: frozenset[str] | None = None) -> torch.dtype:
    """What `dtype: auto` means on `device`: bfloat16 on CUDA that supports it (else float16) and
    on CPUs with native bfloat16 (`NATIVE_BF16_FLAGS`), float32 on other CPUs."""
    import torch

    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    present = cpu_flags() if flags is None else flags
    return torch.bfloat16 if present & NATIVE_BF16_FLAGS else torch.float32


def torch_dtype(spec: ModelSpec, device: str) -> torch.dtype:
    import torch

    on_gpu = device.startswith("cuda")
    if spec.dtype == "auto":
        return auto_dtype(device)
    if spec.dtype == "float16" and not on_gpu:
        raise ValueError(
            f"model {spec.id!r}: float16 is only supported on GPU; use float32 or bfloat16 on {device!r}"
        )
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[spec.dtype]
