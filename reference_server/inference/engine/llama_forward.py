"""The engine's own forward pass for the Llama family (Llama, SmolLM and checkpoints of the same
shape), as vLLM and SGLang write their own model code instead of running the library's modules.

A decode step of a small model is mostly not arithmetic: transformers' modules run each layer
as a few dozen small operations, each behind a module call, keyword plumbing, decorators and
hooks. This forward runs the same arithmetic with fewer, larger operations and no per-layer
Python beyond the calls themselves:

- q, k and v are one matmul per layer, and gate and up another (`FusedLinear`: the weights
  concatenated once at load), o and down stay the model's own modules;
- the rotary cos/sin are computed once per step by the model's own rotary module (so every
  RoPE scaling it supports is kept) and applied with the same formula in every layer;
- the norms are `F.rms_norm` over the model's weights;
- keys and values go straight into the engine's slot cache rows (`SlotKVCache.store`), and
  each segment of the packed row attends to its own row with one SDPA call.

It takes the packed row the engine plans (`SlotKVCache.plan`) and returns the logits of the
rows kept. The weights come from the model as transformers loaded it, so any Hugging Face
checkpoint of the family loads as before; every other forward (`generate()`, scoring,
training) keeps running transformers' modules, over the same storage: q/k/v and gate/up of
the model are views of the fused weights. Other architectures keep transformers' forward in
the engine (`build` returns None).
"""

from __future__ import annotations

import logging
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from reference_server.inference.engine.kvcache import SlotKVCache
from reference_server.inference.engine.lora import AdapterLinear, current_batch
from reference_server.inference.engine.packed_linear import pack_linears
from reference_server.inference.loading.spec import PackedWeights

logger = logging.getLogger("reference_server")

FAMILY = ("llama",)


def supported(model: Any) -> str | None:
    """None when `model` can run this forward, else why not."""
    config = model.config
    if getattr(config, "model_type", None) not in FAMILY:
        return f"model type {getattr(config, 'model_type', None)!r} is not of the Llama family"
    if getattr(config, "hidden_act", "silu") != "silu":
        return f"activation {config.hidden_act!r}"
    if getattr(config, "pretraining_tp", 1) != 1:
        return "pretraining_tp > 1"
    # The fused projections must be plain linears (an adapter wrapper around one is fine: the
    # fused module applies its updates); o and down are called as the model has them.
    layers = model.model.layers
    fused = [getattr(layer.self_attn, n) for layer in layers for n in ("q_proj", "k_proj", "v_proj")]
    fused += [getattr(layer.mlp, n) for layer in layers for n in ("gate_proj", "up_proj")]
    if any(_plain(p) is None for p in fused):
        return "its q/k/v or gate/up projections are not plain linear layers (quantized?)"
    return None


def _plain(module: Any) -> nn.Linear | None:
    """The plain float `nn.Linear` computing `module`'s base product, if it is one."""
    base = module.base if isinstance(module, AdapterLinear) else module
    if type(base) is not nn.Linear or type(base.weight) is not nn.Parameter:
        return None
    return base


class FusedLinear(nn.Module):
    """Several projections of one input in one matmul: `names` (q, k, v; or gate, up), their
    weights (and biases) concatenated once, returned as one output per projection.

    Per-projection low-rank updates (LoRA) are added here, in `forward`, after the matmul:
    projection `i`'s update (per token, from the adapters of the current forward, `lora`) is
    added to output `i` under the module path `paths[i]` of the model's own projection, which
    is exactly what that projection's `AdapterLinear` would add to its own output.
    """

    def __init__(self, names: tuple[str, ...], linears: list[nn.Linear]) -> None:
        super().__init__()
        self.names = names
        self.paths: list[str] = []  # the model's projections' module paths, once wrapped (`adapt`)
        self.sizes = [int(linear.out_features) for linear in linears]
        weight = torch.cat([linear.weight.detach() for linear in linears])
        biases = [linear.bias for linear in linears]
        bias = torch.cat([b.detach() for b in biases]) if all(b is not None for b in biases) else None
        if bias is None and any(b is not None for b in biases):
            raise ValueError("some of the fused projections have a bias and some do not")
        self.linear = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None,
                                device=weight.device, dtype=weight.dtype)
        with torch.no_grad():
            self.linear.weight.copy_(weight)
            if bias is not None:
                self.linear.bias.copy_(bias)
        self.linear.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        parts = list(self.linear(x).split(self.sizes, dim=-1))
        batch = current_batch()
        if batch is not None and self.paths:
            parts = [batch.apply(path, x, part) for path, part in zip(self.paths, parts)]
        return parts

    def share_with(self, linears: list[nn.Linear]) -> None:
        """Make `linears` (the model's own projections) views of the fused weights, so both
        forwards hold one copy."""
        offset = 0
        for linear, size in zip(linears, self.sizes):
            linear.weight = nn.Parameter(self.linear.weight.data[offset : offset + size], requires_grad=False)
            if linear.bias is not None:
                linear.bias = nn.Parameter(self.linear.bias.data[offset : offset + size], requires_grad=False)
            offset += size


class _Layer(nn.Module):
    qkv: FusedLinear
    gate_up: FusedLinear
    o_proj: nn.Module
    down_proj: nn.Module
    input_norm: nn.Parameter
    post_norm: nn.Parameter

    def __init__(self, layer: Any) -> None:
        super().__init__()
        attn, mlp = layer.self_attn, layer.mlp
        qkv = [_linear(attn.q_proj), _linear(attn.k_proj), _linear(attn.v_proj)]
        gate_up = [_linear(mlp.gate_proj), _linear(mlp.up_proj)]
        self.qkv = FusedLinear(("q", "k", "v"), qkv)
        self.gate_up = FusedLinear(("gate", "up"), gate_up)
        self.qkv.share_with(qkv)
        self.gate_up.share_with(gate_up)
        self.o_proj, self.down_proj = attn.o_proj, mlp.down_proj
        self.input_norm = layer.input_layernorm.weight
        self.post_norm = layer.post_attention_layernorm.weight
        self.eps = float(layer.input_layernorm.variance_epsilon)
        self.post_eps = float(layer.post_attention_layernorm.variance_epsilon)
        self.scaling = float(attn.scaling)
        self.layer_idx = int(attn.layer_idx)


class LlamaForward(nn.Module):
    """The forward described in the module docstring, over a transformers Llama model."""

    embed: nn.Module
    rotary: nn.Module
    lm_head: nn.Module
    norm: nn.Parameter

    def __init__(self, model: Any) -> None:
        super().__init__()
        config = model.config
        self.embed = model.model.embed_tokens
        self.rotary = model.model.rotary_emb
        self._layers = [_Layer(layer) for layer in model.model.layers]
        self.layers = nn.ModuleList(self._layers)
        self.norm = model.model.norm.weight
        self.norm_eps = float(model.model.norm.variance_epsilon)
        self.lm_head = model.lm_head
        self.heads = int(config.num_attention_heads)
        self.kv_heads = int(config.num_key_value_heads)
        self.head_dim = int(getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads)

    def layers_list(self) -> list[_Layer]:
        """The decoder layers, in order."""
        return self._layers

    def pack(self, model: Any, mode: PackedWeights, rows: int) -> int:
        """Pack this forward's linears for oneDNN (`packed_linear`), and give `model` the packed
        o, down and head layers it shares with this forward (its q/k/v and gate/up stay plain
        views of the fused weights); return how many layers were packed."""
        packed = pack_linears(self, mode, rows)
        if packed:
            for layer, ours in zip(model.model.layers, self._layers):
                layer.self_attn.o_proj, layer.mlp.down_proj = ours.o_proj, ours.down_proj
            model.lm_head = self.lm_head
        return packed

    def adapt(self, model: Any) -> None:
        """Apply adapters as `model`'s wrapped projections (`lora.wrap_projections`) would: call
        its o and down wrappers, and give the fused projections their module paths."""
        for layer, ours in zip(model.model.layers, self._layers):
            attn, mlp = layer.self_attn, layer.mlp
            ours.o_proj, ours.down_proj = attn.o_proj, mlp.down_proj
            ours.qkv.paths = [_path(attn.q_proj), _path(attn.k_proj), _path(attn.v_proj)]
            ours.gate_up.paths = [_path(mlp.gate_proj), _path(mlp.up_proj)]

    def forward(self, input_ids: torch.Tensor, position_ids: torch.Tensor, cache: SlotKVCache,
                keep: torch.Tensor) -> torch.Tensor:
        """Logits `[len(keep), vocab]` of the packed row `input_ids` (`[tokens]`) at the
        positions `keep`, writing its keys and values where `cache`'s plan says."""
        tokens = int(input_ids.shape[0])
        hidden = self.embed(input_ids)
        cos, sin = self.rotary(hidden, position_ids[None])
        cos, sin = cos[0, :, None], sin[0, :, None]  # [tokens, 1, head_dim]: every head alike
        half = self.head_dim // 2
        heads, kv_heads, dim = self.heads, self.kv_heads, self.head_dim
        width = hidden.shape[-1]
        for layer in self._layers:
            x = F.rms_norm(hidden, (width,), layer.input_norm, layer.eps)
            q, k, v = layer.qkv(x)
            q = rotate(q.view(tokens, heads, dim), cos, sin, half)
            k = rotate(k.view(tokens, kv_heads, dim), cos, sin, half)
            cache.store(layer.layer_idx, k, v.view(tokens, kv_heads, dim))
            attended = cache.attend_packed(layer.layer_idx, q, layer.scaling)
            hidden = hidden + layer.o_proj(attended.reshape(tokens, heads * dim))
            x = F.rms_norm(hidden, (width,), layer.post_norm, layer.post_eps)
            gate, up = layer.gate_up(x)
            hidden = hidden + layer.down_proj(F.silu(gate) * up)
        hidden = F.rms_norm(hidden[keep], (width,), self.norm, self.norm_eps)
        logits: torch.Tensor = self.lm_head(hidden)
        return logits


def _linear(module: Any) -> nn.Linear:
    linear = _plain(module)
    assert linear is not None, "checked by supported()"
    return linear


def _path(module: Any) -> str:
    if not isinstance(module, AdapterLinear):
        raise TypeError(f"{type(module).__name__} is not wrapped for adapters")
    return module.path


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, half: int) -> torch.Tensor:
    """Rotary embedding as transformers applies it: x * cos + rotate_half(x) * sin."""
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos + rotated * sin


def build(model: Any) -> LlamaForward | None:
    """The lean forward over `model`, or None (logged) where the model keeps transformers' own."""
    reason = supported(model)
    if reason is not None:
        logger.info("engine forward: transformers' modules (%s)", reason)
        return None
    logger.info("engine forward: the engine's own Llama-family forward (fused q/k/v and gate/up)")
    return LlamaForward(model)
