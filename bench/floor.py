"""The hardware floor of a decode step, measured on this machine in the same run as the figures
held against it.

A decode step of a small model reads every weight once and multiplies each by every row of
the batch, so it can go no faster than the slower of two bounds:

- memory: the bytes one step reads (the weights the forward uses, plus the KV cache of the
  batch) over the read bandwidth, measured as a sum over 1 GiB on the configured threads;
- dense math: two FLOPs per weight of the linear layers per row of the batch, over the
  FLOP/s of a large matmul in the model's dtype on the same threads.

Both are measured, not taken from a data sheet: on a shared or throttled machine the floor
moves with the machine, and a ratio against it means something only when both sides come from
one run. `llama_cpp_tps` adds llama.cpp as an outside reference where `llama-cpp-python` is
installed (it is not a dependency: its package compiles from source for a long time where no
wheel fits).
"""

from __future__ import annotations

import importlib.util
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

READ_BYTES = 2**30
MATMUL_SIZE = 2048
REPEATS = 5


@dataclass
class Floor:
    threads: int
    dtype: str
    read_gbps: float  # GB/s (1e9 bytes)
    matmul_gflops: float
    weight_bytes: int  # read by one decode step, whatever the batch
    linear_params: int  # weights of the linear layers (the head included): FLOPs per row / 2
    kv_bytes_per_token: int

    def step_s(self, batch: int, context: int) -> dict[str, float]:
        """Seconds of one decode step of `batch` rows, each attending to `context` cached tokens:
        the memory bound, the math bound, and the floor (the larger)."""
        memory = (self.weight_bytes + batch * context * self.kv_bytes_per_token) / (self.read_gbps * 1e9)
        math = 2 * self.linear_params * batch / (self.matmul_gflops * 1e9)
        return {"memory_s": memory, "math_s": math, "floor_s": max(memory, math)}

    def tps(self, batch: int, context: int) -> float:
        """Output tokens/s at the floor."""
        return batch / self.step_s(batch, context)["floor_s"]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def read_gbps(threads: int, repeats: int = REPEATS) -> float:
    """GB/s of a sum over `READ_BYTES` of float32 on `threads` threads (the fastest of `repeats`)."""
    import torch

    torch.set_num_threads(threads)
    data = torch.ones(READ_BYTES // 4, dtype=torch.float32)
    data.sum()  # pages it in
    best = min(_timed(data.sum) for _ in range(repeats))
    del data
    return READ_BYTES / best / 1e9


def matmul_gflops(dtype: Any, threads: int, repeats: int = REPEATS) -> float:
    """GFLOP/s of a `MATMUL_SIZE` square matmul in `dtype` on `threads` threads (the fastest)."""
    import torch

    torch.set_num_threads(threads)
    a = torch.randn(MATMUL_SIZE, MATMUL_SIZE).to(dtype)
    b = torch.randn(MATMUL_SIZE, MATMUL_SIZE).to(dtype)
    with torch.inference_mode():
        torch.mm(a, b)
        best = min(_timed(lambda: torch.mm(a, b)) for _ in range(repeats))
    return 2 * MATMUL_SIZE**3 / best / 1e9


def _timed(fn: Any) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def step_bytes(model: Any) -> tuple[int, int]:
    """(bytes one decode step reads, weights of its linear layers) of a transformers model.

    Every parameter and buffer counts once (tied weights share storage), except an input
    embedding that is not also the output head: a step reads only its batch's rows of it.
    """
    import torch

    embedding = model.get_input_embeddings().weight
    head = model.get_output_embeddings()
    tied = head is not None and head.weight.data_ptr() == embedding.data_ptr()
    seen: set[int] = set()
    total = 0
    for tensor in [*model.parameters(), *model.buffers()]:
        if tensor.data_ptr() in seen or (tensor.data_ptr() == embedding.data_ptr() and not tied):
            continue
        seen.add(tensor.data_ptr())
        total += tensor.numel() * tensor.element_size()
    # A tied head is a Linear over the embedding's storage: counted here like any other.
    linear = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))
    return total, linear


def measure(model: Any, threads: int) -> Floor:
    """The floor of `model` (loaded, on CPU) on `threads` threads."""
    config = model.config.get_text_config()
    weight_bytes, linear = step_bytes(model)
    dtype = next(model.parameters()).dtype
    heads = int(getattr(config, "num_key_value_heads", None) or config.num_attention_heads)
    head_dim = int(getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads)
    kv = 2 * int(config.num_hidden_layers) * heads * head_dim * dtype.itemsize
    return Floor(threads=threads, dtype=str(dtype).removeprefix("torch."), read_gbps=read_gbps(threads),
                 matmul_gflops=matmul_gflops(dtype, threads), weight_bytes=weight_bytes, linear_params=linear,
                 kv_bytes_per_token=kv)


def llama_cpp_tps(gguf: Path | None, prompt: str, output_len: int, threads: int) -> float | str:
    """Output tokens/s of llama.cpp (`llama-cpp-python`) decoding `output_len` tokens of one
    prompt from the model's GGUF file, or why it was not measured."""
    if importlib.util.find_spec("llama_cpp") is None:
        return "absent (llama-cpp-python is not installed)"
    if gguf is None or not gguf.is_file():
        return "no GGUF file for this model"
    import llama_cpp

    llm = llama_cpp.Llama(model_path=str(gguf), n_threads=threads, n_ctx=512, verbose=False)
    llm.create_completion(prompt, max_tokens=8, temperature=0.0)  # warm-up
    start = time.perf_counter()
    out = llm.create_completion(prompt, max_tokens=output_len, temperature=0.0)
    elapsed = time.perf_counter() - start
    return int(out["usage"]["completion_tokens"]) / elapsed
