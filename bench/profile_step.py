"""Where one decode step's time goes, at batch 1 and 8: the table of docs/benchmarks.md.

The engine (`GenerationEngine`, the server's own) decodes `--tokens` tokens for 1 and for 8
prompts submitted together, in this process: with its decode steps compiled per batch-size
bucket as the server runs them (`compiled`, after the buckets are compiled), eager over its
own forward (`own`), and over transformers' modules (`transformers`). Only steady decode steps count (every sequence
decoding, no prompt in the step). Each step is split by timers around the engine's own
methods: the forward pass, sampling, detokenizing (`IncrementalDetokenizer`), and the rest
of the engine thread's work (the scheduler's Python: planning the step, bookkeeping, handing
events to the event loop). The forward is split further with `torch.profiler` over the same
steps: each top-level operator's time, inclusive, by kind (linear layers, attention, KV cache
writes, norms, rotary and activations, views and other operators), scaled to the forward's
unprofiled time; the remainder is Python and dispatch between the operators (and, in a
compiled graph, its fused C++ kernels: the norms, rotary and activations).

The event loop and SSE are measured on a real `maas serve` process: the CPU time of its main
thread (uvicorn's event loop: the routes, SSE encoding, HTTP) over streamed completions at
c = 1 and c = 8, per decode step (the `maas_batch_size` histogram's count). On 2 cores that
thread competes with the torch threads, so its CPU time is what it takes from the steps.

    python -m bench.profile_step                      # default dtype, 2 threads
    python -m bench.profile_step --dtype float32 --tokens 64
    python -m bench.profile_step --forward-only --threads 1 --repeats 25   # the forwards alone, A/B
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import statistics
import sys
import tempfile
import time
import warnings
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench._common import GENERATOR, compiled, machine, prompts, table

# Top-level operators of the forward, by kind (the first matching prefix wins).
KINDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("linear layers", ("aten::linear", "aten::addmm", "aten::mm", "aten::matmul", "aten::bmm",
                       "mkldnn::_linear_pointwise", "aten::_weight_int8pack_mm", "aten::_weight_int4pack_mm")),
    ("attention", ("aten::scaled_dot_product_attention", "aten::_scaled_dot_product", "maas::slot_attention",
                   "maas::attend")),
    ("KV cache writes", ("maas::store", "aten::copy_", "aten::_foreach_copy", "aten::index_put", "aten::empty", "aten::zeros")),
    ("norms, rotary, activations", ("aten::pow", "aten::mean", "aten::rsqrt", "aten::mul", "aten::add",
                                    "aten::neg", "aten::cat", "aten::silu", "aten::cos", "aten::sin",
                                    "aten::to", "aten::_to_copy", "aten::sub", "aten::div", "aten::rms_norm",
                                    "aten::_fused_rms_norm", "aten::embedding", "aten::type_as")),
    ("views and indexing", ("aten::view", "aten::reshape", "aten::transpose", "aten::slice", "aten::select",
                            "aten::unsqueeze", "aten::expand", "aten::as_strided", "aten::contiguous",
                            "aten::index", "aten::t", "aten::squeeze", "aten::permute", "aten::split",
                            "aten::chunk", "aten::narrow", "aten::unbind", "aten::alias", "aten::detach")),
)
OTHER = "other operators"
FORWARD_PARTS = [k for k, _ in KINDS] + [OTHER, "the rest: Python, dispatch (compiled: its C++ kernels)"]
VARIANTS = ("own", "own, row by row", "transformers")
ROWS = [*FORWARD_PARTS, "sampling", "scheduler Python", "detokenizing", "event loop and SSE"]


def _kind(name: str) -> str:
    return next((kind for kind, prefixes in KINDS if name.startswith(prefixes)), OTHER)


class StepTimer:
    """Timers wrapped around one engine's methods, on its thread; keeps steady decode steps."""

    def __init__(self, engine: Any, batch: int, profile_steps: int) -> None:
        self.engine, self.batch = engine, batch
        self.steps: list[dict[str, float]] = []
        self._current: dict[str, float] | None = None
        self._profile_left = profile_steps
        self._profiler: Any = None
        self.profiled_forward_s = 0.0
        self.operator_s: dict[str, float] = defaultdict(float)
        self._model = engine._model
        engine._sample = self._timed(engine._sample, "sampling")
        engine._model = self._timed(self._model, "forward")
        engine._step = lambda: self._step(type(engine)._step.__get__(engine))
        forward = engine._forward
        if forward is not None:  # the engine's own forward calls this, not the model
            engine._forward = self._timed(forward, "forward")
        compiled = engine._compiled
        if compiled is not None:  # decode steps in a compiled bucket call its graph
            compiled._compiled = self._timed(compiled._compiled, "forward")

    def restore(self) -> None:
        """Take the timers off the engine again."""
        for name in ("_sample", "_step"):
            delattr(self.engine, name)
        self.engine._model = self._model
        if self.engine._forward is not None:
            self.engine._forward = self.engine._forward.__wrapped__
        if self.engine._compiled is not None:
            self.engine._compiled._compiled = self.engine._compiled._compiled.__wrapped__

    def _timed(self, fn: Callable[..., Any], part: str) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                if self._current is not None:
                    self._current[part] = self._current.get(part, 0.0) + time.perf_counter() - start
        timed.__wrapped__ = fn  # type: ignore[attr-defined]
        return timed

    def detokenizing(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        return self._timed(fn, "detokenizing")

    def _step(self, step: Callable[[], None]) -> None:
        steady = len(self.engine._running) == self.batch and not self.engine._prefilling
        self._current = {}
        profiling = steady and self.steps and self._profile_left > 0
        if profiling:
            self._start_profiler()
        start = time.perf_counter()
        step()
        elapsed = time.perf_counter() - start
        if profiling:
            self._stop_profiler(self._current.get("forward", 0.0))
        elif steady:
            self._current["step"] = elapsed
            self.steps.append(self._current)
        self._current = None

    def _start_profiler(self) -> None:
        from torch.profiler import ProfilerActivity, profile

        self._profiler = profile(activities=[ProfilerActivity.CPU])
        self._profiler.__enter__()

    def _stop_profiler(self, forward_s: float) -> None:
        self._profiler.__exit__(None, None, None)
        self._profile_left -= 1
        self.profiled_forward_s += forward_s
        for event in self._profiler.events():
            if _top_level(event) and event.name.startswith(("aten::", "mkldnn::", "maas::")):
                self.operator_s[_kind(event.name)] += event.cpu_time_total / 1e6
        self._profiler = None


# What a compiled decode graph's operators run inside: they count as top level. Its fused C++
# kernels (norms, rotary, activations) are no operators and fall in the remainder.
COMPILED_WRAPPERS = ("Torch-Compiled Region", "## Call CompiledFxGraph", "TorchDynamo")


def _top_level(event: Any) -> bool:
    parent = event.cpu_parent
    while parent is not None:
        if not parent.name.startswith(COMPILED_WRAPPERS):
            return False
        parent = parent.cpu_parent
    return True


def _labelled(fn: Callable[..., Any], label: str) -> Callable[..., Any]:
    """`fn` inside a profiler range named `label`: the cache's store and attention are Python
    methods running many operators (matmuls among them), which count as one part."""
    import torch

    def labelled(*args: Any, **kwargs: Any) -> Any:
        with torch.profiler.record_function(label):
            return fn(*args, **kwargs)
    return labelled


def engine_profile(engine: Any, batch: int, tokens: int, profile_steps: int) -> dict[str, float]:
    """Milliseconds per steady decode step of a started engine, by part, for `batch` prompts
    decoding together."""
    from reference_server.inference.engine import detokenize
    from reference_server.inference.engine.kvcache import SlotKVCache
    from reference_server.inference.engine.sampling import SamplingParams

    timer = StepTimer(engine, batch, profile_steps)
    cache = SlotKVCache
    cache_methods = {"store": cache.store, "attend_packed": cache.attend_packed}
    cache.store = _labelled(cache.store, "maas::store")  # type: ignore[method-assign]
    cache.attend_packed = _labelled(cache.attend_packed, "maas::attend")  # type: ignore[method-assign]
    cls = detokenize.IncrementalDetokenizer
    originals = {name: getattr(cls, name) for name in ("step", "finish")}
    for name, fn in originals.items():
        setattr(cls, name, timer.detokenizing(fn))
    tok = engine._tokenizer
    ids = [list(tok(p, add_special_tokens=True)["input_ids"]) for p in prompts(batch)]
    params = SamplingParams(max_tokens=tokens, temperature=0, ignore_eos=True)

    async def run() -> None:
        async def one(prompt: list[int]) -> None:
            async for _ in engine.submit(prompt, params):
                pass
        await asyncio.gather(*(one(p) for p in ids))

    try:
        asyncio.run(run())
    finally:
        timer.restore()
        for name, fn in originals.items():
            setattr(cls, name, fn)
        for name, fn in cache_methods.items():
            setattr(cache, name, fn)
    steps = timer.steps
    if not steps:
        raise RuntimeError("no steady decode step was measured")

    def per_step(part: str) -> float:
        return statistics.median(s.get(part, 0.0) for s in steps) * 1e3

    forward, step = per_step("forward"), per_step("step")
    out: dict[str, float] = {}
    scale = forward / (timer.profiled_forward_s * 1e3 / profile_steps) if timer.profiled_forward_s else 0.0
    in_operators = 0.0
    for part in FORWARD_PARTS[:-1]:
        out[part] = timer.operator_s.get(part, 0.0) * 1e3 / profile_steps * scale
        in_operators += out[part]
    out[FORWARD_PARTS[-1]] = max(0.0, forward - in_operators)
    out["sampling"] = per_step("sampling")
    out["detokenizing"] = per_step("detokenizing")
    out["scheduler Python"] = statistics.median(
        s["step"] - s.get("forward", 0.0) - s.get("sampling", 0.0) - s.get("detokenizing", 0.0) for s in steps) * 1e3
    out["forward"], out["step"], out["steps"] = forward, step, len(steps)
    return out


def forward_minima(loaded: Any, own: Any, batches: list[int], context: int, repeats: int) -> dict[tuple[str, int], float]:
    """Milliseconds of one decode forward of `batch` rows, each after `context` cached tokens,
    through the engine's own forward (its decoding rows' attention batched, and row by row)
    and through transformers' modules (all over packed weights as the engines leave them),
    called in turns: the fastest of `repeats` each, which
    a busy machine disturbs least. Keys "NAME cpu" hold the calling thread's CPU time (with one torch thread, all of the forward's work; other processes on
    the cores do not add to it)."""
    import torch

    from reference_server.inference.engine import kvcache
    from reference_server.inference.engine.kvcache import SlotKVCache

    model = loaded.model
    gather = kvcache.GATHER_TOKENS
    out: dict[tuple[str, int], list[float]] = defaultdict(list)
    with torch.inference_mode():
        for batch in batches:
            cache = SlotKVCache(len(model.model.layers), batch, context + 8, torch.device(loaded.device))
            slots = list(range(batch))
            prompt = [[(7 * i + j) % 1000 + 10 for j in range(context)] for i in slots]
            inputs = cache.plan(slots, [0] * batch, prompt)
            own(inputs["input_ids"][0], inputs["position_ids"][0], cache, torch.tensor([context - 1]))
            keep = torch.arange(batch)
            for _ in range(repeats):
                for name in VARIANTS:
                    inputs = cache.plan(slots, [context] * batch, [[11] for _ in slots])
                    kvcache.GATHER_TOKENS = 0 if name == "own, row by row" else gather
                    start, cpu = time.perf_counter(), time.thread_time()
                    if name == "transformers":
                        model(**inputs, cache=cache, use_cache=True, logits_to_keep=keep)
                    else:
                        own(inputs["input_ids"][0], inputs["position_ids"][0], cache, keep)
                    out[name, batch].append(time.perf_counter() - start)
                    out[f"{name} cpu", batch].append(time.thread_time() - cpu)
                kvcache.GATHER_TOKENS = gather
    return {key: min(times) * 1e3 for key, times in out.items()}


def _main_thread_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/task/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


async def _decode_steps(client: Any, url: str, model: str) -> float:
    text = (await client.get(f"{url}/metrics")).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("maas_batch_size_count") and f'model="{model}"' in line)


def server_loop_ms(dtype: str, threads: int, tokens: int, batches: list[int]) -> dict[int, float]:
    """Milliseconds of the server's main thread (event loop, routes, SSE) per decode step."""
    from bench.serving import http_client, run_level
    from reference_server.testing import ServerProcess

    env = {"MAAS_DTYPE": dtype, "MAAS_ENABLED_MODELS": GENERATOR, "MAAS_THREADS": str(threads),
           "MAAS_API_KEYS": "", "MAAS_LOG_LEVEL": "warning"}
    with tempfile.TemporaryDirectory(prefix="maas-profile-") as tmp, \
            ServerProcess(env={**env, "MAAS_DATA_DIR": tmp}, log_path=Path(tmp) / "server.log") as proc:
        assert proc.process is not None
        compiled(proc.url)  # its decode steps as the server runs them once started
        pid = proc.process.pid

        async def measure(batch: int) -> float:
            async with http_client(proc.base_url, None, batch) as client:
                await run_level(client, GENERATOR, prompts(2), 8, 2)  # warm-up
                steps, cpu = await _decode_steps(client, proc.url, GENERATOR), _main_thread_cpu_s(pid)
                run = await run_level(client, GENERATOR, prompts(batch), tokens, batch)
                steps = await _decode_steps(client, proc.url, GENERATOR) - steps
                cpu = _main_thread_cpu_s(pid) - cpu
            if run.failures:
                raise RuntimeError(f"{run.failures} requests failed: {run.requests[0].error}")
            return cpu * 1e3 / max(1.0, steps)

        return {batch: asyncio.run(measure(batch)) for batch in batches}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dtype", default="auto", help="float32, bfloat16, auto (the server's default).")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tokens", type=int, default=64, help="Tokens each sequence decodes.")
    parser.add_argument("--profile-steps", type=int, default=8, help="Steady steps run under torch.profiler.")
    parser.add_argument("--repeats", type=int, default=30, help="Calls of each forward alone, in turns.")
    parser.add_argument("--forward-only", action="store_true",
                        help="Only the last table: one decode forward alone through each path, in turns.")
    parser.add_argument("--skip-server", action="store_true", help="Leave out the event loop and SSE row.")
    parser.add_argument("--forwards", default="compiled,own,transformers",
                        help="Which engine forwards to profile, side by side: compiled (the own forward with its "
                             "decode steps compiled per bucket, the server's default), own (eager), transformers.")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")

    from reference_server.inference.loading import configure_threads, default_specs, load_model
    from reference_server.settings import Settings

    configure_threads(args.threads)
    spec = next(s for s in default_specs() if s.id == GENERATOR)
    spec.dtype = args.dtype  # type: ignore[assignment]
    # Loaded on a thread that ends, as the server loads: torch's OpenMP workers of a live thread
    # that ran a forward stay, and with more of them than cores every parallel region pays a
    # wake-up (the engines' own threads would measure slower than the server's).
    with ThreadPoolExecutor(1) as pool:
        loaded = pool.submit(load_model, spec, cache_dir=Settings().cache_dir, device="cpu").result()
    print(f"# one decode step of {GENERATOR}, {loaded.dtype}, {args.threads} threads, {args.tokens} tokens; "
          f"{machine()}", flush=True)
    batches = [1, 8]
    # The own forward first: building it leaves transformers' modules whole (views of its
    # weights), where packing transformers' modules first would leave nothing for it to fuse.
    from reference_server.inference.engine.generation import GenerationEngine

    forwards = [f for f in ("compiled", "own", "transformers") if f in args.forwards.split(",")]
    buckets = Settings().engine_compile_buckets
    engines = {f: GenerationEngine(loaded, max_running=16, own_forward=f != "transformers",
                                   compile_buckets=buckets if f == "compiled" else (),
                                   compile_cache_dir=Settings().cache_dir / "inductor") for f in forwards}
    parts = {}
    for f, engine in engines.items():
        # One engine thread at a time: each keeps torch's OpenMP workers while it lives, and with
        # more of them than cores every parallel region pays a wake-up (the server runs one).
        engine.start()
        try:
            if engine.compiled is not None and not engine.compiled.wait():
                raise RuntimeError(f"compiling the decode steps failed: {engine.compiled.failed}")
            if not args.forward_only:
                parts.update({(f, b): engine_profile(engine, b, args.tokens, args.profile_steps) for b in batches})
        finally:
            asyncio.run(engine.stop())
    minima = {}
    own = engines["own"]._forward if "own" in engines else None
    if own is not None and "transformers" in engines:
        minima = forward_minima(loaded, own, batches, context=40, repeats=args.repeats)
    loop = {} if args.skip_server or args.forward_only else server_loop_ms(args.dtype, args.threads, args.tokens,
                                                                          batches)
    if parts:
        _print_parts(parts, loop, forwards, batches, args.profile_steps)
    if minima:
        print(f"\nforward alone, one decode step after 40 cached tokens, fastest of {args.repeats} calls in turns "
              f"(CPU: the calling thread's); load average now {os.getloadavg()[0]:.2f}:")
        print(table(["batch", *[f"{v} {unit}" for v in VARIANTS for unit in ("ms", "CPU ms")]],
                    [[b, *[minima[key, b] for v in VARIANTS for key in (v, f"{v} cpu")]] for b in batches]))
    return 0


def _print_parts(parts: dict[tuple[str, int], dict[str, float]], loop: dict[int, float], forwards: list[str],
                 batches: list[int], profile_steps: int) -> None:
    rows = []
    for part in ROWS:
        row: list[Any] = [part]
        for f in forwards:
            for b in batches:
                value = loop.get(b, math.nan) if part == "event loop and SSE" else parts[f, b][part]
                total = parts[f, b]["step"] + loop.get(b, 0.0)
                row += [value, f"{value / total:.0%}" if not math.isnan(value) else "-"]
        rows.append(row)
    rows.append(["step (engine thread)", *[x for f in forwards for b in batches for x in (parts[f, b]["step"], "")]])
    print(table(["part", *[f"{f} b={b} {c}" for f in forwards for b in batches for c in ("ms", "share")]], rows))
    counts = ", ".join(f"{f} b={b}: {int(parts[f, b]['steps'])}" for f in forwards for b in batches)
    print(f"\nsteady steps measured: {counts}"
          f" (median per part; forward split from {profile_steps} profiled steps); the event loop row is "
          f"the server's (`MAAS_ENGINE_FORWARD` default); load average now "
          f"{', '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    sys.exit(main())
