"""Steps of the engine's own Llama-family forward, compiled by inductor per bucket of tokens, in
the background while the eager forward serves.

On a CPU a decode step of a small model is its linear layers plus the per-operation cost of a
few hundred small operations. inductor removes both: with the weights frozen into the graph,
its C++ GEMM templates read a bfloat16 weight for one row at 37 GB/s where oneDNN's packed
linear reaches 22 GB/s (a plain read of the same bytes: 34 GB/s), and the norms, rotary and
activations become a few fused C++ loops called from one wrapper. Measured in process on the
2-core development machine, bfloat16: one decode forward of SmolLM2-135M took 22 ms eager and
10-13 ms compiled at one row; 17, 23 and 29 ms compiled at 2, 4 and 8 rows.

The graph takes the packed row as the engine plans it (`SlotKVCache.plan`), whatever its
tokens are: a decoding row's one token or a prompt slice's several. So a step that carries a
long prompt's slice beside the decoding rows runs compiled too (eager, such steps took 64 ms at
p50 beside 7 rows where a decode step alone took 26 ms, `bench.serving` `long-prompt` on two
cores). Logits come back for the positions the engine keeps (one per sequence), not for every
token.

What stays eager:
- attention, with the cache's per-slot rows and lanes (`SlotKVCache.store` and
  `attend_packed`), which the graph calls as one opaque operator per layer
  (`maas::slot_attention`), in float32; the step's cache and number of real tokens reach it
  through a thread-local (`_step`), so the graph never sees the rows' lengths and one graph
  serves every step of its bucket;
- steps with adapter rows (lora.py applies adapters, in the eager forward only), steps of
  more tokens than the largest bucket compiled so far, and steps of prompt tokens alone (with
  nothing decoding: a prompt's first token then comes from the same forward whether a stored
  prefix left only its tail to prefill or not; see `GenerationEngine._step`).

Each bucket is one static shape (its tokens, the rest padded): shapes that change every step
would be compiled again and again. The graphs are compiled one bucket after another on a
thread of their own after the engine starts, so the server is ready at once and each bucket
takes over when it is ready. inductor's kernels and autotuning results are cached on disk
(`TORCHINDUCTOR_CACHE_DIR`, by default under the server's cache folder), which takes a
bucket's compile from 46-71 s to 30-37 s on two cores; the frozen graph itself is not cached
(inductor bypasses its graph cache when weights are frozen). Every bucket holds its own copy of
the weights in the layout its kernels read.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from reference_server.inference.engine.kvcache import SlotKVCache
from reference_server.inference.engine.llama_forward import rotate

if TYPE_CHECKING:
    from reference_server.inference.engine.llama_forward import LlamaForward

logger = logging.getLogger("reference_server")

COMPILE_DTYPES = (torch.bfloat16, torch.float32)
INDUCTOR_OPTIONS = {
    "freezing": True,  # weights as constants, packed once for the GEMM templates
    "max_autotune": True,
    "max_autotune_gemm_backends": "CPP,ATEN",
}


class _StepContext(threading.local):
    cache: SlotKVCache | None = None
    tokens: int = 0
    scaling: float = 1.0


_step = _StepContext()


@torch.library.custom_op("maas::slot_attention", mutates_args=())
def slot_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, layer: int) -> torch.Tensor:
    """Store the real tokens' keys and values of `layer` in the step's cache and attend each to
    its own row (`SlotKVCache.store`, `attend_packed`); padding tokens attend to nothing (zeros)."""
    cache, rows = _step.cache, _step.tokens
    if cache is None:
        raise RuntimeError("maas::slot_attention called outside a compiled decode step")
    cache.store(layer, key[:rows], value[:rows])
    attended = cache.attend_packed(layer, query[:rows], _step.scaling).contiguous()  # a new tensor, never a view
    if rows == query.shape[0]:
        return attended
    out = query.new_zeros(query.shape)
    out[:rows] = attended
    return out


@slot_attention.register_fake
def _(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, layer: int) -> torch.Tensor:
    return torch.empty_like(query)


def supported(forward: LlamaForward, device: torch.device) -> str | None:
    """None when `forward`'s decode steps can be compiled here, else why not."""
    if device.type != "cpu":
        return f"device {device.type} (CUDA graphs are not built)"
    dtype = forward.embed.weight.dtype
    if dtype not in COMPILE_DTYPES:
        return f"dtype {dtype}"
    try:
        for layer in forward.layers_list():
            _weight(layer.qkv.linear), _weight(layer.gate_up.linear), _weight(layer.o_proj), _weight(layer.down_proj)
        _weight(forward.lm_head)
    except TypeError as exc:
        return str(exc)
    return None


class DecodeGraph(nn.Module):
    """One decode forward over `forward`'s plain weights, held as this module's parameters so
    that inductor freezes them (the same tensors: nothing is copied until inductor packs them).
    Built before the eager forward packs its own linears."""

    def __init__(self, forward: LlamaForward) -> None:
        super().__init__()
        layers = forward.layers_list()

        def frozen(tensor: torch.Tensor) -> nn.Parameter:
            return nn.Parameter(tensor.detach(), requires_grad=False)

        self.heads, self.kv_heads, self.head_dim = forward.heads, forward.kv_heads, forward.head_dim
        self.embed = frozen(_weight(forward.embed, embedding=True))
        self.qkv = nn.ParameterList([frozen(_weight(layer.qkv.linear)) for layer in layers])
        self.o = nn.ParameterList([frozen(_weight(layer.o_proj)) for layer in layers])
        self.gate_up = nn.ParameterList([frozen(_weight(layer.gate_up.linear)) for layer in layers])
        self.down = nn.ParameterList([frozen(_weight(layer.down_proj)) for layer in layers])
        self.input_norm = nn.ParameterList([frozen(layer.input_norm) for layer in layers])
        self.post_norm = nn.ParameterList([frozen(layer.post_norm) for layer in layers])
        self.eps = [layer.eps for layer in layers]
        self.post_eps = [layer.post_eps for layer in layers]
        self.norm = frozen(forward.norm)
        self.norm_eps = forward.norm_eps
        self.head = frozen(_weight(forward.lm_head))
        self.intermediate = layers[0].gate_up.sizes[0]

    def forward(self, input_ids: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """Logits at the positions `keep` of the packed row `input_ids`."""
        tokens = input_ids.shape[0]
        heads, kv_heads, dim = self.heads, self.kv_heads, self.head_dim
        half = dim // 2
        hidden = F.embedding(input_ids, self.embed)
        width = hidden.shape[-1]
        for i in range(len(self.qkv)):
            x = F.rms_norm(hidden, (width,), self.input_norm[i], self.eps[i])
            qkv = F.linear(x, self.qkv[i]).view(tokens, heads + 2 * kv_heads, dim)
            qk = qkv[:, : heads + kv_heads]
            qk = rotate(qk, cos, sin, half)
            # In float32, converted in the graph's own loops: the cache's lanes and attention are float32.
            attended = torch.ops.maas.slot_attention(qk[:, :heads].float(), qk[:, heads:].float(),
                                                     qkv[:, heads + kv_heads :].float(), i)
            hidden = hidden + F.linear(attended.to(hidden.dtype).reshape(tokens, heads * dim), self.o[i])
            x = F.rms_norm(hidden, (width,), self.post_norm[i], self.post_eps[i])
            gate, up = F.linear(x, self.gate_up[i]).split_with_sizes([self.intermediate, self.intermediate], dim=-1)
            hidden = hidden + F.linear(F.silu(gate) * up, self.down[i])
        return F.linear(F.rms_norm(hidden[keep], (width,), self.norm, self.norm_eps), self.head)


def _weight(module: Any, embedding: bool = False) -> torch.Tensor:
    base = getattr(module, "base", module)  # an adapter wrapper's base layer
    if embedding:
        if type(base) is not nn.Embedding:
            raise TypeError(f"{type(base).__name__} is not a plain embedding")
    elif type(base) is not nn.Linear or base.bias is not None:
        raise TypeError(f"{type(base).__name__} is not a plain linear layer without bias")
    weight: torch.Tensor = base.weight
    return weight


class CompiledDecode:
    """The compiled decode graphs of one engine (see the module docstring)."""

    def __init__(self, forward: LlamaForward, buckets: Sequence[int], max_rows: int,
                 cache_dir: Path | None = None) -> None:
        if not buckets or any(b < 1 for b in buckets):
            raise ValueError("compile buckets must be positive row counts")
        if cache_dir is not None:
            from torch._inductor.runtime.cache_dir_utils import default_cache_dir

            # inductor writes its default into the environment once it has looked: a folder the
            # operator chose is kept, the default one (under /tmp) gives way to the server's cache.
            if os.environ.get("TORCHINDUCTOR_CACHE_DIR") in (None, default_cache_dir()):
                os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(cache_dir)
        self._forward = forward
        self.buckets = sorted(set(buckets))
        # Logits a step keeps: one per sequence in it (at most `max_rows`), so a bucket of many
        # tokens (prompt slices) computes the head for its sequences' rows only.
        self._kept = {bucket: min(bucket, max_rows) for bucket in self.buckets}
        self._graph = DecodeGraph(forward)
        self._compiled = torch.compile(self._graph, dynamic=False)
        self._ready: list[int] = []
        self.seconds: dict[int, float] = {}
        self.failed: str | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._stopping = False

    @property
    def compile_seconds(self) -> float:
        return sum(self.seconds.values())

    @property
    def pending(self) -> int:
        """Buckets still to compile (0 once compiling failed or stopped)."""
        if self.failed is not None or self._stopping:
            return 0
        return len(self.buckets) - len(self.ready_buckets)

    @property
    def started(self) -> bool:
        return self._thread is not None

    @property
    def ready_buckets(self) -> list[int]:
        with self._lock:
            return list(self._ready)

    def start(self, threads: int) -> None:
        """Compile the buckets, smallest first, on a thread of its own with `threads` torch threads."""
        self._thread = threading.Thread(target=self._compile_all, args=(threads,), name="engine-compile",
                                        daemon=True)
        self._thread.start()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until every bucket is compiled (or compiling failed); True when all are ready."""
        if self._thread is not None:
            self._thread.join(timeout)
        return len(self.ready_buckets) == len(self.buckets)

    def largest_bucket(self) -> int:
        """The most tokens a step may have to run compiled now (0 before any bucket is ready)."""
        with self._lock:
            return max(self._ready, default=0)

    def bucket(self, tokens: int, kept: int) -> int | None:
        """The compiled bucket a step of `tokens` tokens keeping `kept` logits runs in, or None
        (eager)."""
        with self._lock:
            return next((b for b in self._ready if b >= tokens and kept <= self._kept[b]), None)

    def __call__(self, bucket: int, input_ids: torch.Tensor, position_ids: torch.Tensor,
                 cache: SlotKVCache, keep: torch.Tensor) -> torch.Tensor:
        """Logits `[len(keep), vocab]` at the positions `keep` of a step of the packed row
        `input_ids` (a decoding row's one token, a prompt slice's several; the cache planned for
        them), run in the compiled graph of `bucket` tokens."""
        tokens, kept = int(input_ids.shape[0]), int(keep.shape[0])
        if bucket > tokens:
            input_ids = F.pad(input_ids, (0, bucket - tokens))
            position_ids = F.pad(position_ids, (0, bucket - tokens))
        if self._kept[bucket] > kept:
            keep = F.pad(keep, (0, self._kept[bucket] - kept))
        cos, sin = self._forward.rotary(self._graph.norm[:1], position_ids[None])
        _step.cache, _step.tokens, _step.scaling = cache, tokens, self._forward.layers_list()[0].scaling
        try:
            logits: torch.Tensor = self._compiled(input_ids, cos[0, :, None], sin[0, :, None], keep)
        finally:
            _step.cache = None
        return logits[:kept]

    def stop(self) -> None:
        """Compile no further bucket (one compiling now runs to its end)."""
        self._stopping = True

    def _compile_all(self, threads: int) -> None:
        torch.set_num_threads(threads)
        layers = len(self._forward.layers_list())
        device = self._graph.embed.device
        from torch._inductor import config as inductor_config

        # inductor reads these while compiling, which happens in the first call of each bucket, here.
        with torch.inference_mode(), inductor_config.patch(INDUCTOR_OPTIONS):
            for bucket in self.buckets:
                if self._stopping:
                    return
                start = time.monotonic()
                try:
                    cache = SlotKVCache(layers, bucket, 8, device, self._graph.embed.dtype)
                    rows = list(range(bucket))
                    inputs = cache.plan(rows, [0] * bucket, [[0] for _ in rows])
                    keep = torch.arange(self._kept[bucket], device=device)
                    self(bucket, inputs["input_ids"][0], inputs["position_ids"][0], cache, keep)
                except Exception as exc:
                    self.failed = f"{type(exc).__name__}: {exc}"
                    logger.exception("engine compile: bucket of %d tokens failed; steps stay eager",
                                     bucket)
                    return
                self.seconds[bucket] = time.monotonic() - start
                with self._lock:
                    self._ready.append(bucket)
                logger.info("engine compile: steps of up to %d tokens compiled in %.1f s", bucket,
                            self.seconds[bucket])
        logger.info("engine compile: %d buckets ready in %.1f s (%s)", len(self.buckets), self.compile_seconds,
                    os.environ.get("TORCHINDUCTOR_CACHE_DIR", "inductor's default cache"))


def build(forward: LlamaForward | None, device: torch.device, buckets: Sequence[int], max_rows: int,
          cache_dir: Path | None) -> CompiledDecode | None:
    """The compiled steps for `forward` (of at most `max_rows` sequences each), or None (logged)
    where steps stay eager."""
    if forward is None or not buckets:
        return None
    reason = supported(forward, device)
    if reason is not None:
        logger.info("engine compile: off (%s)", reason)
        return None
    return CompiledDecode(forward, buckets, max_rows, cache_dir)
