"""Low-rank adapters applied per token inside a shared forward pass: the one place of the model
runner where a row gets its adapter's update.

Every projection a LoRA adapter can target (`TARGETS`) is wrapped once in an `AdapterLinear`,
whatever module computes the base product (plain, oneDNN-packed or quantized). The wrapper
adds nothing unless a forward runs inside `applying(batch)`: then each token of the packed row
gets `B @ A @ x` of the adapter its sequence uses (scaled), and tokens of the base model get
nothing. So any forward that calls these modules, the engine's or another, applies adapters
the same way. The engine's own Llama-family forward computes q/k/v and gate/up in one fused
matmul each; its `FusedLinear` adds each projection's update under that projection's module
path (`current_batch`), the same update its wrapper would add.

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

On CPU the two products are computed in float32 even for a bfloat16 model (the concatenations
are float32 copies; the resident adapters keep the model's dtype). A bfloat16 matmul on CPU runs
in oneDNN, which builds a kernel (a primitive) for each exact shape and keeps it in a cache of up
to 1,024; the adapter products' shapes change with every step's token count and the sum of its
adapters' ranks, so serving many adapters kept filling that cache: memory that stayed and was
counted as the adapters', and a few milliseconds of kernel building for each new shape. float32
goes to MKL's sgemm, which keeps nothing per shape. Measured in one process (`x @ A` and `h @ B`
for 128 token counts x 8 ranks, 576 features): bfloat16 added 634 MiB of resident memory (after
`malloc_trim`) and took 18 s, float32 7 MiB and 1 s. With shapes warm, on one thread, a
projection's update takes 9-29 us in float32 for 1-8 decode tokens (bfloat16 37-45 us) and
0.5-0.9 ms for 512 prompt tokens (bfloat16 0.2-0.4 ms). In one engine process with 100 rank-8
adapters through 16 slots (8 requests at a time of 16 tokens, after a round on the base model),
a request to each added 127 MiB of resident memory and a second round 28 MiB more, of which
20 MiB were live tensors (the resident adapters, prefix entries); in float32, 58 MiB and 1 MiB.
`python -m bench.tenants` (100 rank-8 adapters through 16 slots, a request to each, measured
within one server process; 2 threads, bfloat16, on the shared 2-core machine, one run each):
116 MiB added in bfloat16, 78 MiB in float32 (target 92).

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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

# The projections adapters may target: a decoder layer's (Llama-style names) and a BERT-style
# encoder layer's (`query`, `key`, `value`, and the `dense` of its attention output, intermediate
# and output blocks, as PEFT names them on a sequence classifier of the encoder).
TARGETS = frozenset({"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj",
                     "query", "key", "value", "dense"})
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
    """A resident adapter: per wrapped module path, `A` (`[r, in]`) and `B` scaled (`[out, r]`),
    as PEFT stores them (reading an adapter copies nothing it need not: cold starts stay short)."""

    name: str
    rank: int
    weights: dict[str, tuple[torch.Tensor, torch.Tensor]]


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
                 dtype: torch.dtype, device: torch.device | str, prefix: str = "",
                 others: dict[str, torch.Tensor] | None = None) -> Adapter:
    """Read the PEFT adapter in `folder` for a model whose wrapped projections are `modules`.

    `prefix` is where that model sits inside the model PEFT adapted (`bert.` for an encoder
    adapted as a sequence classifier), removed from the saved module paths. Tensors that are
    not LoRA weights (the modules PEFT saves whole, `modules_to_save`) go into `others` by
    their path, when it is given; otherwise they make the folder unusable."""
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
        if path is None and others is not None:
            others[key.removeprefix(_PEFT_PREFIX)] = tensor
            continue
        if path is None:
            raise AdapterError(f"{weights_path} holds {key!r}, which is not a LoRA weight this server applies")
        pairs.setdefault(path.removeprefix(prefix), {})[part] = tensor
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
        # A NaN would reach every row of a shared forward (a masked NaN is still NaN).
        if not (torch.isfinite(a).all() and torch.isfinite(b).all()):
            raise AdapterError(f"{weights_path}: {path} holds values that are not finite")
        module_alpha = float(next((v for k, v in alphas.items() if path.endswith(k)), alpha))
        scale = module_alpha / (math.sqrt(r) if rslora else r)
        weights[path] = (a.to(device=device, dtype=dtype), b.to(device=device, dtype=dtype).mul_(scale))
        rank = max(rank, r)
    return Adapter(name=name, rank=rank, weights=weights)


def read_merged(folder: Path, base_folder: Path, name: str, modules: dict[str, AdapterLinear], *,
                max_rank: int, dtype: torch.dtype, device: torch.device | str) -> Adapter:
    """The adapter hidden in a LoRA fine-tune saved merged (a whole model folder, as LoRA jobs
    were saved before adapters were kept): for each projection, the difference between its
    weights and the base model's in `base_folder`, which has the rank of the LoRA that was
    merged, factored back into `A` and `B` by SVD. Singular values below 1e-4 of the largest
    are float rounding of the merge and are dropped; a difference of higher rank than
    `max_rank` is not a LoRA (a full fine-tune)."""
    merged, base = _tensor_files(folder), _tensor_files(base_folder)
    weights: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    rank = 0
    for path, module in modules.items():
        key = f"{path}.weight"
        if key not in merged or key not in base:
            raise AdapterError(f"{folder} or its base model lacks {key}: not a fine-tune of this base model")
        tuned, original = _read_tensor(merged[key], key).float(), _read_tensor(base[key], key).float()
        if tuned.shape != (module.out_features, module.in_features) or tuned.shape != original.shape:
            raise AdapterError(f"{folder}: {key} does not fit this base model (another base model?)")
        delta = tuned - original
        if not bool(torch.isfinite(delta).all()):
            raise AdapterError(f"{folder}: {key} holds values that are not finite")
        if not bool(delta.any()):
            continue  # a projection the LoRA did not target
        u, s, vh = torch.linalg.svd(delta, full_matrices=False)
        r = int((s > s[0] * 1e-4).sum())
        if r > max_rank:
            raise AdapterError(f"{folder}: {key} differs from the base model with rank {r}, above "
                               f"MAAS_MAX_LORA_RANK={max_rank} (a full fine-tune, not a LoRA)", param="r")
        root = s[:r].sqrt()
        weights[path] = ((root[:, None] * vh[:r]).to(device=device, dtype=dtype),
                         (u[:, :r] * root).to(device=device, dtype=dtype))
        rank = max(rank, r)
    return Adapter(name=name, rank=rank, weights=weights)


def _tensor_files(folder: Path) -> dict[str, Path]:
    """Which safetensors file of a model folder holds each tensor (one file, or shards and their index)."""
    index = folder / "model.safetensors.index.json"
    try:
        if index.is_file():
            return {k: folder / v for k, v in json.loads(index.read_text())["weight_map"].items()}
        from safetensors import safe_open

        single = folder / "model.safetensors"
        with safe_open(str(single), framework="pt") as handle:
            return dict.fromkeys(handle.keys(), single)
    except Exception as exc:
        raise AdapterError(f"the model folder {folder} cannot be read: {exc}") from exc


def _read_tensor(file: Path, key: str) -> torch.Tensor:
    from safetensors import safe_open

    try:
        with safe_open(str(file), framework="pt") as handle:
            tensor: torch.Tensor = handle.get_tensor(key)
            return tensor
    except Exception as exc:
        raise AdapterError(f"{file} cannot be read: {exc}") from exc


def _split_key(key: str) -> tuple[str | None, str]:
    for part in ("A", "B"):
        for suffix in (f".lora_{part}.weight", f".lora_{part}.default.weight"):
            if key.endswith(suffix):
                return key.removesuffix(suffix).removeprefix(_PEFT_PREFIX), part
    return None, ""


# ----- applying adapters in a forward -----

_CURRENT: contextvars.ContextVar[AdapterBatch | None] = contextvars.ContextVar("maas_adapter_batch", default=None)


def current_batch() -> AdapterBatch | None:
    """The adapters of the forward running on this thread (`applying`), for a module that
    computes several projections at once and applies their updates itself (`llama_forward`)."""
    return _CURRENT.get()


@contextlib.contextmanager
def applying(batch: AdapterBatch | None) -> Iterator[None]:
    """Apply `batch`'s adapters in every wrapped projection called on this thread meanwhile."""
    token = _CURRENT.set(batch)
    try:
        yield
    finally:
        _CURRENT.reset(token)


def product_dtype(weight: torch.Tensor) -> torch.dtype:
    """The dtype the adapter products of `weight`'s adapters are computed in: float32 on CPU for
    reduced-precision weights (see the module docstring), the weights' own dtype elsewhere."""
    if weight.device.type == "cpu" and weight.dtype in (torch.bfloat16, torch.float16):
        return torch.float32
    return weight.dtype


class AdapterSet:
    """The adapters of a step and their weights concatenated per module path, built on first use
    and kept while the following steps have the same adapters."""

    def __init__(self, adapters: Sequence[Adapter]) -> None:
        self.adapters = tuple(adapters)
        self._cats: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None] = {}
        self._owners: dict[tuple[tuple[int, int], ...], torch.Tensor] = {}

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
            dtype = product_dtype(parts[0][1][0])
            a = torch.cat([w[0] for _, w in parts], dim=0).t().contiguous().to(dtype)
            b = torch.cat([w[1] for _, w in parts], dim=1).t().contiguous().to(dtype)
            cat = (a, b, self._owner(tuple((i, w[0].shape[0]) for i, w in parts), a.device))
        self._cats[path] = cat
        return cat

    def _owner(self, ranks: tuple[tuple[int, int], ...], device: torch.device) -> torch.Tensor:
        """The adapter index of each concatenated column, for adapters `(index, rank)` in order
        (shared by every module path where the same adapters have the same ranks)."""
        owner = self._owners.get(ranks)
        if owner is None:
            owner = self._owners[ranks] = torch.tensor([i for i, r in ranks for _ in range(r)], device=device)
        return owner


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
