"""Low-rank adapters applied per token inside a shared forward pass: the one place of the model
runner where a row gets its adapter's update.

Every projection a LoRA adapter can target (`TARGETS`) is wrapped once in an `AdapterLinear`,
whatever module computes the base product (plain, oneDNN-packed or quantized). The wrapper
adds nothing unless a forward runs inside `applying(batch)`: then each token of the packed row
gets `B @ A @ x` of the adapter its sequence uses (scaled), and tokens of the base model get
nothing. So any forward that calls these modules, the engine's or another, applies adapters
the same way.

How the update is computed (`AdapterBatch.apply`): the `A` matrices of the adapters present in
the step are concatenated into one `[in, R]` matrix and their `B` matrices into one `[R, out]`
(R the sum of their ranks), so one projection costs two dense matmuls whatever the number of
adapters: `h = x @ A_cat`, `h *= mask` (each token keeps only its own adapter's columns),
`out += h @ B_cat`. The concatenations are reused while the step's adapters stay the same.
Measured in-process (`x @ A @ B` of every projection of the default generator, 30 layers x 7,
rank-8 adapters, float32, one thread, median of five; on the shared 2-core development
machine under a load average of 12, so only the ratios mean much): 8 decode tokens of 8
different adapters, 66 ms for this masked concatenation, 180 ms gathering each token's
`A`/`B` and two batched matmuls (Punica's BGMV in plain torch), 183 ms with one group per
adapter (index, two matmuls, index_add); 8 tokens of one adapter 70, 188 and 41 ms; 512
prompt tokens of one adapter 1.8 s, 12.3 s and 0.8 s. The concatenation wins where adapters
mix, and where they do not it skips the mask (every token of the forward uses one adapter).

An adapter is read from a PEFT folder (`adapter_config.json` + `adapter_model.safetensors`),
checked against the model it will run on (its modules and their shapes), with the scaling
folded into `B`.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

# The projections of a decoder layer that adapters may target (Llama-style names).
TARGETS = frozenset({"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"})
CONFIG_FILE = "adapter_config.json"
WEIGHTS_FILE = "adapter_model.safetensors"
# PEFT's saved keys: "base_model.model.<module path>.lora_A.weight" / ".lora_B.weight".
_PEFT_PREFIX = "base_model.model."


class AdapterError(ValueError):
    """An adapter folder that cannot run on this model: corrupt, of another base, or too large.
    The message names what is wrong; `param` the setting or field it concerns."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


@dataclass(eq=False)
class Adapter:
    """A resident adapter: per wrapped module path, `A` transposed (`[in, r]`) and `B`
    transposed and scaled (`[r, out]`), ready for `x @ a @ b`."""

    name: str
    rank: int
    weights: dict[str, tuple[torch.Tensor, torch.Tensor]]
    nbytes: int = field(init=False)

    def __post_init__(self) -> None:
        self.nbytes = sum(a.nbytes + b.nbytes for a, b in self.weights.values())


class AdapterLinear(torch.nn.Module):
    """A projection plus the per-token low-rank update of the adapters of the current forward."""

    def __init__(self, base: torch.nn.Module, path: str) -> None:
        super().__init__()
        self.base = base
        self.path = path
        self.in_features, self.out_features = _dims(base)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.base(x)
        batch = _CURRENT.get()
        if batch is None:
            return out
        return batch.apply(self.path, x, out)


def wrap_projections(model: torch.nn.Module) -> dict[str, AdapterLinear]:
    """Wrap every `TARGETS` projection of `model` in an `AdapterLinear` (once: a model already
    wrapped is left as it is); returns them by module path."""
    wrapped: dict[str, AdapterLinear] = {}
    for name, module in list(model.named_modules()):
        if isinstance(module, AdapterLinear):
            wrapped[name] = module
            continue
        parent_name, _, child = name.rpartition(".")
        if child not in TARGETS or _dims_or_none(module) is None:
            continue
        parent = model.get_submodule(parent_name) if parent_name else model
        if isinstance(parent, AdapterLinear):
            continue
        layer = AdapterLinear(module, name)
        setattr(parent, child, layer)
        wrapped[name] = layer
    return wrapped


def adapter_modules(model: torch.nn.Module) -> dict[str, AdapterLinear]:
    return {name: m for name, m in model.named_modules() if isinstance(m, AdapterLinear)}


def _dims_or_none(module: Any) -> tuple[int, int] | None:
    n_in, n_out = getattr(module, "in_features", None), getattr(module, "out_features", None)
    if isinstance(n_in, int) and isinstance(n_out, int):
        return n_in, n_out
    return None


def _dims(module: Any) -> tuple[int, int]:
    dims = _dims_or_none(module)
    if dims is None:
        raise TypeError(f"{type(module).__name__} has no in_features/out_features")
    return dims


# ----- reading PEFT folders -----

def read_config(folder: Path, *, max_rank: int) -> dict[str, Any]:
    """The folder's adapter config, checked to be a plain LoRA adapter within `max_rank`."""
    path = folder / CONFIG_FILE
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise AdapterError(f"{path} cannot be read as an adapter config: {exc}") from exc
    if not isinstance(config, dict) or str(config.get("peft_type", "LORA")).upper() != "LORA":
        raise AdapterError(f"{path} is not a LoRA adapter config")
    rank = config.get("r")
    if not isinstance(rank, int) or rank < 1:
        raise AdapterError(f"{path}: r must be a positive integer, not {rank!r}", param="r")
    if rank > max_rank:
        raise AdapterError(f"the adapter in {folder} has rank {rank}, above MAAS_MAX_LORA_RANK={max_rank}",
                           param="r")
    ranks = config.get("rank_pattern") or {}
    if any(not isinstance(v, int) or v > max_rank for v in ranks.values()):
        raise AdapterError(f"{path}: a rank in rank_pattern is above MAAS_MAX_LORA_RANK={max_rank}", param="r")
    if config.get("use_dora"):
        raise AdapterError(f"{path}: DoRA adapters are not served")
    if config.get("bias", "none") != "none":
        raise AdapterError(f"{path}: adapters that train biases are not served")
    return config


def read_adapter(folder: Path, name: str, modules: dict[str, AdapterLinear], *, max_rank: int,
                 dtype: torch.dtype, device: torch.device | str) -> Adapter:
    """Read the PEFT adapter in `folder` for a model whose wrapped projections are `modules`."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    config = read_config(folder, max_rank=max_rank)
    weights_path = folder / WEIGHTS_FILE
    try:
        tensors = load_file(str(weights_path))
    except (OSError, SafetensorError, ValueError, RuntimeError) as exc:
        raise AdapterError(f"{weights_path} cannot be read: {exc}") from exc
    pairs: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in tensors.items():
        path, part = _split_key(key)
        if path is None:
            raise AdapterError(f"{weights_path} holds {key!r}, which is not a LoRA weight this server applies")
        pairs.setdefault(path, {})[part] = tensor
    if not pairs:
        raise AdapterError(f"{weights_path} holds no LoRA weights")
    alpha = float(config.get("lora_alpha", config["r"]))
    rslora = bool(config.get("use_rslora"))
    alphas: dict[str, Any] = config.get("alpha_pattern") or {}
    weights: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    rank = 0
    for path, pair in sorted(pairs.items()):
        module = modules.get(path)
        if module is None:
            raise AdapterError(f"the adapter in {folder} targets {path}, which this base model does not have "
                               "(an adapter for another base model?)")
        if set(pair) != {"A", "B"}:
            raise AdapterError(f"{weights_path}: {path} lacks its lora_A or lora_B weight")
        a, b = pair["A"], pair["B"]
        r = a.shape[0]
        if (a.dim(), b.dim()) != (2, 2) or a.shape[1] != module.in_features or b.shape != (module.out_features, r):
            raise AdapterError(
                f"the adapter in {folder} has {path} weights of shapes {tuple(a.shape)} and {tuple(b.shape)}, "
                f"which do not fit this base model's {module.in_features} -> {module.out_features} projection "
                "(an adapter for another base model?)")
        if r > max_rank:
            raise AdapterError(f"the adapter in {folder} has rank {r} at {path}, above "
                               f"MAAS_MAX_LORA_RANK={max_rank}", param="r")
        if not (torch.isfinite(a).all() and torch.isfinite(b).all()):
            raise AdapterError(f"{weights_path}: {path} holds values that are not finite")
        module_alpha = float(next((v for k, v in alphas.items() if path.endswith(k)), alpha))
        scale = module_alpha / (math.sqrt(r) if rslora else r)
        weights[path] = (a.t().to(device=device, dtype=dtype).contiguous(),
                         (b.t() * scale).to(device=device, dtype=dtype).contiguous())
        rank = max(rank, r)
    return Adapter(name=name, rank=rank, weights=weights)


def _split_key(key: str) -> tuple[str | None, str]:
    for part in ("A", "B"):
        for suffix in (f".lora_{part}.weight", f".lora_{part}.default.weight"):
            if key.endswith(suffix):
                return key.removesuffix(suffix).removeprefix(_PEFT_PREFIX), part
    return None, ""


# ----- applying adapters in a forward -----

_CURRENT: contextvars.ContextVar[AdapterBatch | None] = contextvars.ContextVar("maas_adapter_batch", default=None)


@contextlib.contextmanager
def applying(batch: AdapterBatch | None) -> Iterator[None]:
    """Apply `batch`'s adapters in every wrapped projection called on this thread meanwhile."""
    token = _CURRENT.set(batch)
    try:
        yield
    finally:
        _CURRENT.reset(token)


class AdapterSet:
    """The adapters of a step and their weights concatenated per module path, built on first use
    and kept while the following steps have the same adapters."""

    def __init__(self, adapters: Sequence[Adapter]) -> None:
        self.adapters = tuple(adapters)
        self._cats: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None] = {}

    def same(self, adapters: Sequence[Adapter]) -> bool:
        return len(adapters) == len(self.adapters) and all(a is b for a, b in zip(adapters, self.adapters))

    def concatenated(self, path: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
        """(A_cat `[in, R]`, B_cat `[R, out]`, the adapter index of each of the R columns), or
        None when no adapter of the set targets `path`."""
        if path in self._cats:
            return self._cats[path]
        parts = [(i, adapter.weights[path]) for i, adapter in enumerate(self.adapters) if path in adapter.weights]
        cat = None
        if parts:
            a = torch.cat([w[0] for _, w in parts], dim=1)
            b = torch.cat([w[1] for _, w in parts], dim=0)
            owner = torch.cat([torch.full((w[0].shape[1],), i, dtype=torch.long) for i, w in parts])
            cat = (a, b, owner.to(a.device))
        self._cats[path] = cat
        return cat


class AdapterBatch:
    """Which adapter each token of one forward uses: `groups[t]` is an index into `adapters.adapters`,
    or -1 for the base model. `groups=None` applies the set's single adapter to every token
    (a forward of one fine-tuned model outside the engine)."""

    def __init__(self, adapters: AdapterSet, groups: torch.Tensor | None) -> None:
        self.adapters = adapters
        self.groups = groups
        self._masks: dict[int, torch.Tensor] = {}

    def apply(self, path: str, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        cat = self.adapters.concatenated(path)
        if cat is None:
            return out
        a, b, owner = cat
        flat = x.reshape(-1, x.shape[-1])
        h = torch.mm(flat.to(a.dtype), a)
        if self.groups is not None:
            h.mul_(self._mask(owner, h.dtype))
        update = torch.mm(h, b).view(out.shape)
        return out.add_(update.to(out.dtype)) if not out.requires_grad else out + update.to(out.dtype)

    def _mask(self, owner: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        key = id(owner)
        mask = self._masks.get(key)
        if mask is None:
            assert self.groups is not None
            mask = self._masks[key] = (self.groups[:, None] == owner[None, :]).to(dtype)
        return mask


def batch_for_tokens(current: AdapterSet | None, per_segment: Sequence[tuple[Adapter | None, int]],
                     device: torch.device) -> tuple[AdapterSet | None, AdapterBatch | None]:
    """The adapter batch of a forward whose packed row holds, in order, segments of `n` tokens of
    `adapter` (None: the base model); reuses `current` when it has the same adapters. (None, None)
    when no segment has an adapter."""
    present: list[Adapter] = []
    for adapter, _ in per_segment:
        if adapter is not None and all(adapter is not p for p in present):
            present.append(adapter)
    if not present:
        return current, None
    adapters = current if current is not None and current.same(present) else AdapterSet(present)
    if len(present) == 1 and all(adapter is not None for adapter, _ in per_segment):
        return adapters, AdapterBatch(adapters, None)  # one adapter for every token: no mask
    index = {id(a): i for i, a in enumerate(present)}
    groups = torch.cat([torch.full((n,), index[id(adapter)] if adapter is not None else -1, dtype=torch.long)
                        for adapter, n in per_segment])
    return adapters, AdapterBatch(adapters, groups.to(device))


def whole_forward(adapter: Adapter) -> AdapterBatch:
    """The batch that applies `adapter` to every token of a forward."""
    return AdapterBatch(AdapterSet([adapter]), None)
