"""Device and precision policy: which device, how many threads, which torch dtype a spec gets there."""

from __future__ import annotations

from typing import TYPE_CHECKING

from reference_server.inference.loading.spec import ModelSpec

if TYPE_CHECKING:
    import torch


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


def torch_dtype(spec: ModelSpec, device: str) -> torch.dtype:
    import torch

    on_gpu = device.startswith("cuda")
    if spec.dtype == "auto":
        if on_gpu:
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    if spec.dtype == "float16" and not on_gpu:
        raise ValueError(
            f"model {spec.id!r}: float16 is only supported on GPU; use float32 or bfloat16 on {device!r}"
        )
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[spec.dtype]


