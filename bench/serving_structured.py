"""The `structured` workload of bench/serving.py: what constrained decoding costs.

1. Compile times, in-process (the server's `StructuredBackend` on our tokenizer): distinct
   schemas compiled cold, then again from the cache; p50 and p99.
2. Throughput: `--num-requests` streaming completions at concurrency 8, every one constrained
   by a JSON schema (the five of `data/schemas.json` in turn, compiled once in the warm-up),
   then the same prompts unconstrained, each asked for exactly the number of tokens its
   constrained twin produced, so both sides do the same work in the same schedule (requests
   of different lengths join and leave the batch at the same points). Target: >= 0.8x.
3. Isolation: the unconstrained run again while one more request with a pathological schema
   (a 3000-value enum inside 30 levels of nesting) decodes beside it, in a loop; its ITL p99
   against the unconstrained runs' (one before, one after everything, as the machine's speed
   drifts). Target: at most +20%.

    python -m bench.serving structured [--num-requests 32] [--base-url ... --api-key ...]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from bench._common import machine, percentile, prompts, server, table
from bench.serving import RunResult, http_client, one_request, run_level

SCHEMAS: list[dict[str, Any]] = list(json.loads((Path(__file__).parent / "data" / "schemas.json").read_text()).values())
CONCURRENCY = 8
MAX_OUTPUT = 96


def pathological() -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": {"v": {"enum": [f"value-{i}" for i in range(3000)]}},
                              "required": ["v"]}
    for _ in range(30):
        schema = {"type": "object", "properties": {"a": schema}, "required": ["a"]}
    return schema


def compile_times(count: int) -> dict[str, list[float]]:
    """Cold and cached compile durations (seconds) of `count` distinct schemas."""
    from bench.structured import _tokenizer
    from reference_server.inference.structured import StructuredBackend, specs

    tokenizer = _tokenizer()
    backend = StructuredBackend(tokenizer, len(tokenizer), [int(tokenizer.eos_token_id)])
    backend.compile_sync(specs.json_object("warm-up"))  # the vocabulary is read once, not per schema
    variants = [specs.json_schema({**SCHEMAS[i % len(SCHEMAS)], "description": f"variant {i}"}, "p")
                for i in range(count)]

    async def measure() -> dict[str, list[float]]:
        out: dict[str, list[float]] = {"cold": [], "cached": []}
        for phase in ("cold", "cached"):
            for spec in variants:
                start = time.perf_counter()
                await backend.compile(spec)
                out[phase].append(time.perf_counter() - start)
        return out

    try:
        return asyncio.run(measure())
    finally:
        backend.close()


async def _throughput(url: str, args: argparse.Namespace) -> tuple[RunResult, RunResult, RunResult, RunResult]:
    texts = prompts(args.num_requests)
    schemas = [SCHEMAS[i % len(SCHEMAS)] for i in range(len(texts))]
    async with http_client(url, args.api_key, CONCURRENCY + 1) as client:
        warm = await run_level(client, args.model, [f"Warm-up {i}:" for i in range(len(SCHEMAS))], MAX_OUTPUT,
                               len(SCHEMAS), SCHEMAS)
        if warm.failures:
            raise RuntimeError(f"warm-up failed: {warm.requests[0].error}")
        constrained = await run_level(client, args.model, texts, MAX_OUTPUT, CONCURRENCY, schemas)
        # Each unconstrained twin is asked for exactly as many tokens as its constrained request
        # produced: the same prompts, lengths and so the same schedule of joins and leaves.
        produced = {r.index: r.output_tokens for r in constrained.succeeded}
        length = [max(2, produced.get(i, MAX_OUTPUT)) for i in range(len(texts))]
        free = await run_level(client, args.model, texts, length, CONCURRENCY)

        stop = asyncio.Event()
        heavy = pathological()

        async def disturb() -> None:
            while not stop.is_set():
                result = await one_request(client, args.model, "Pick a value:", MAX_OUTPUT * 2, heavy)
                if result.error:
                    raise RuntimeError(f"the pathological request failed: {result.error}")

        task = asyncio.create_task(disturb())
        try:
            disturbed = await run_level(client, args.model, texts, length, CONCURRENCY)
        finally:
            stop.set()
            await task
        # Once more, last: the machine's speed drifts, and the two runs bracket the others.
        free_again = await run_level(client, args.model, texts, length, CONCURRENCY)
    return constrained, free, disturbed, free_again


def run(args: argparse.Namespace) -> int:
    print(f"# serving, structured workload: {args.model}, {args.num_requests} requests at concurrency "
          f"{CONCURRENCY}, {args.threads} threads; {machine()}", file=sys.stderr)
    times = compile_times(50)
    print("Schema compile time (50 distinct schemas, in-process, ms):\n")
    print(table(["", "p50", "p99", "max"], [
        [phase, percentile(v, 50) * 1e3, percentile(v, 99) * 1e3, max(v) * 1e3] for phase, v in times.items()]))
    with server(args.model, args.threads, args.base_url, {"MAAS_DTYPE": args.dtype}, args.server_log) as url:
        constrained, free, disturbed, free_again = asyncio.run(_throughput(url, args))
    rows = []
    for name, result in (("unconstrained", free), ("all constrained", constrained),
                         ("unconstrained + 1 pathological", disturbed), ("unconstrained, again", free_again)):
        s = result.stats()
        rows.append([name, result.output_tps, statistics.mean(r.output_tokens for r in result.succeeded),
                     s["ttft"]["p50"] * 1e3, s["itl"]["p50"] * 1e3, s["itl"]["p99"] * 1e3, result.failures])
    print("\nThroughput at concurrency 8:\n")
    print(table(["run", "tok/s", "tokens/request", "TTFT p50 ms", "ITL p50 ms", "ITL p99 ms", "failures"], rows))
    free_tps = (free.output_tps + free_again.output_tps) / 2
    free_itl = (free.stats()["itl"]["p99"] + free_again.stats()["itl"]["p99"]) / 2
    ratio = constrained.output_tps / free_tps
    itl_change = disturbed.stats()["itl"]["p99"] / free_itl - 1
    print(f"\nconstrained / unconstrained throughput (the mean of both unconstrained runs): {ratio:.2f}x "
          "(target >= 0.8x)")
    print(f"ITL p99 of free rows beside a pathological one: {itl_change:+.0%} (target <= +20%)")
    cached_p99 = percentile(times["cached"], 99)
    print(f"cached compile p99: {cached_p99 * 1e3:.3f} ms (target < 1 ms)")
    return 1 if any(r.failures for r in (constrained, free, disturbed, free_again)) else 0
