"""What the benchmarks share: their fixed inputs, percentile summaries, the result tables,
the benchmark server, and running reference measurements in a child process.

References (plain `model.generate()`, in-process encoding) run in child processes started
with `spawn`, and never while the server is working: both would otherwise compete for the
same few cores and each would make the other look slow. A child may stay loaded (idle)
while the server runs, so that measurements to be compared can be taken back to back: on a
shared machine, speed drifts by tens of percent within minutes.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import tempfile
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from maas_sdk.protocol.vocabulary import DEFAULT_EMBEDDER, DEFAULT_GENERATOR

DATA = Path(__file__).resolve().parent / "data"
GENERATOR = DEFAULT_GENERATOR
EMBEDDER = DEFAULT_EMBEDDER


def prompts(n: int) -> list[str]:
    """`n` distinct prompts from `data/prompts.txt`; past its end they repeat with a numbered
    prefix, so no two requests share a prompt (and no prefix cache could help)."""
    lines = [line.strip() for line in (DATA / "prompts.txt").read_text().splitlines() if line.strip()]
    return [lines[i % len(lines)] if i < len(lines) else f"({i // len(lines) + 1}) {lines[i % len(lines)]}"
            for i in range(n)]


def perplexity_text() -> str:
    return (DATA / "perplexity.txt").read_text()


def sentences() -> list[str]:
    """Short, distinct sentences for the embedding benchmark (the perplexity text, split)."""
    text = " ".join(perplexity_text().split())
    return [s.strip() + "." for s in text.split(". ") if s.strip()]


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100), linearly interpolated as numpy's default does; NaN if empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summary(values: Sequence[float]) -> dict[str, float]:
    """Mean, median and 99th percentile, as vLLM's `benchmark_serving` reports them."""
    mean = sum(values) / len(values) if values else math.nan
    return {"mean": mean, "p50": percentile(values, 50), "p99": percentile(values, 99)}


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A markdown table (so a run's output can go straight into docs/benchmarks.md)."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    lines = ["| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths)) + " |",
             "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    lines += ["| " + " | ".join(c.rjust(w) for c, w in zip(row, widths)) + " |" for row in cells]
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        return f"{value:.2f}" if abs(value) < 100 else f"{value:.0f}"
    return str(value)


def machine() -> str:
    """One line naming the CPU, the flags that decide its speed (AVX-512, AMX, bfloat16; read
    from /proc/cpuinfo now), the CPU count and the load, printed with every result."""
    from reference_server.inference.loading import cpu_flags, cpu_model

    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    flags = sorted(f for f in cpu_flags() if f.startswith(("avx512", "amx")) or "bf16" in f)
    return (f"{cpu_model()}, {os.cpu_count()} CPUs, flags: {' '.join(flags) or 'none of avx512/amx/bf16'}; "
            f"load average {load} (1, 5, 15 min) at the start")


def child() -> ProcessPoolExecutor:
    """A fresh spawned process to run calls in, one at a time. It keeps its module state
    between calls, so a model loaded by one call serves the next; idle, it costs no CPU."""
    return ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))


@contextmanager
def server(models: str, threads: int, base_url: str | None, extra_env: dict[str, str] | None = None,
           log: Path | None = None) -> Iterator[str]:
    """Yield the `/v1` base URL of a running server: `base_url` as given, or a fresh
    `maas serve` serving only `models` with `threads` compute threads, stopped afterwards."""
    if base_url is not None:
        yield base_url.rstrip("/")
        return
    from reference_server.testing import ServerProcess

    with tempfile.TemporaryDirectory(prefix="maas-bench-") as tmp:
        env = {"MAAS_ENABLED_MODELS": models, "MAAS_THREADS": str(threads), "MAAS_DATA_DIR": tmp,
               "MAAS_LOG_LEVEL": "warning", "MAAS_API_KEYS": "",
               **(extra_env or {})}
        with ServerProcess(env=env, log_path=log or Path(tmp) / "server.log") as proc:
            compiled(proc.url)
            yield proc.base_url


def compiled(url: str, timeout: float = 900.0) -> float:
    """Wait until the server at `url` has compiled its decode steps (`maas_engine_compile_pending_buckets`
    at 0 for every model) and return the seconds waited: a benchmark measures the engine at full
    speed, not while it compiles beside the requests."""
    import httpx

    start = time.monotonic()
    while time.monotonic() - start < timeout:
        text = httpx.get(f"{url}/metrics", timeout=10.0).text
        pending = sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                      if line.startswith("maas_engine_compile_pending_buckets{"))
        if not pending:
            return time.monotonic() - start
        time.sleep(1.0)
    raise TimeoutError(f"the server's decode steps were not compiled within {timeout:.0f} s")
