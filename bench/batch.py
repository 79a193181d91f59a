"""Batch API: interactive latency while a batch runs, and the batch's use of idle capacity.

    python -m bench.batch            # a 2,000-line batch under the interactive run, 64 requests per level
    python -m bench.batch --quick    # a small version, to check it works (minutes on a CPU)

One `maas serve` with the default generator, and four measurements on it, in this order, with
every request the same shape (a chat prompt from the fixed text, `--output-len` tokens, greedy):

1. interactive alone: streaming chat requests at concurrency 4, TTFT per request;
2. the engine at concurrency 16: the output tokens per second of 16 clients in a closed loop;
3. a batch alone: `--alone-lines` lines (500) through `/v1/batches`, output tokens per second
   from the moment it is created until it completes (its own upload excluded): after its first
   seconds every slot is busy, so more lines move the figure little and only lengthen the run;
4. interactive during a batch: the same interactive run at concurrency 4 while a second batch
   of `--batch-lines` lines (2,000) runs (it is cancelled once the measurement ends).

The targets the Batch API is held to: TTFT p50 of (4) at most 1.5 times that of (1), and the
batch throughput of (3) at least 0.9 times the engine's (2). The machine line comes first,
then the table; `--json` keeps the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from bench._common import GENERATOR, machine, server, summary, table
from bench.serving import Texts, http_client, run_level

TTFT_TARGET = 1.5
THROUGHPUT_TARGET = 0.9


def _messages(texts: Texts, index: int, prompt_len: int) -> list[dict[str, str]]:
    return [{"role": "user", "content": texts.window(index, prompt_len)}]


def _batch_file(texts: Texts, lines: int, prompt_len: int, output_len: int, offset: int) -> bytes:
    rows = [{"custom_id": f"line-{i}", "method": "POST", "url": "/v1/chat/completions",
             "body": {"model": GENERATOR, "messages": _messages(texts, offset + i, prompt_len),
                      "max_tokens": output_len, "min_tokens": output_len, "temperature": 0}}
            for i in range(lines)]
    return "".join(json.dumps(row) + "\n" for row in rows).encode()


async def _start_batch(client: httpx.AsyncClient, data: bytes) -> tuple[str, float]:
    """Upload `data` and create its batch: (batch id, the time it was created)."""
    upload = await client.post("/files", files={"file": ("bench.jsonl", data)}, data={"purpose": "batch"})
    upload.raise_for_status()
    started = time.perf_counter()
    created = await client.post("/batches", json={"input_file_id": upload.json()["id"],
                                                  "endpoint": "/v1/chat/completions", "completion_window": "24h"})
    created.raise_for_status()
    return str(created.json()["id"]), started


async def _batch_state(client: httpx.AsyncClient, batch_id: str) -> dict[str, Any]:
    found = await client.get(f"/batches/{batch_id}")
    found.raise_for_status()
    state: dict[str, Any] = found.json()
    return state


async def batch_alone(client: httpx.AsyncClient, data: bytes) -> dict[str, Any]:
    """Run one batch to its end; its output tokens per second from creation to completion."""
    batch_id, started = await _start_batch(client, data)
    while (state := await _batch_state(client, batch_id))["status"] not in ("completed", "failed", "expired",
                                                                              "cancelled"):
        await asyncio.sleep(0.2)
    wall = time.perf_counter() - started
    if state["status"] != "completed" or state["request_counts"]["failed"]:
        raise RuntimeError(f"the batch ended {state['status']}: {state['request_counts']}, {state.get('errors')}")
    tokens = int(state["usage"]["output_tokens"])
    return {"lines": state["request_counts"]["total"], "tokens": tokens, "wall_s": wall, "tps": tokens / wall}


async def interactive(client: httpx.AsyncClient, texts: Texts, n: int, prompt_len: int, output_len: int,
                      offset: int) -> dict[str, Any]:
    run = await run_level(client, GENERATOR, [_messages(texts, offset + i, prompt_len) for i in range(n)],
                          output_len, 4)
    if run.failures:
        raise RuntimeError(f"{run.failures} interactive requests failed: {run.requests[0].error}")
    return {"ttft": summary([r.ttft for r in run.succeeded]), "tps": run.output_tps}


async def during_batch(client: httpx.AsyncClient, texts: Texts, data: bytes, n: int, prompt_len: int,
                       output_len: int) -> dict[str, Any]:
    """The interactive run while a batch runs (from once its lines are being answered)."""
    batch_id, _ = await _start_batch(client, data)
    while (await _batch_state(client, batch_id))["request_counts"]["completed"] < 1:
        await asyncio.sleep(0.2)
    figures = await interactive(client, texts, n, prompt_len, output_len, offset=50_000)
    state = await _batch_state(client, batch_id)
    figures["batch_status"] = state["status"]
    figures["batch_done"] = state["request_counts"]["completed"]
    if state["status"] == "completed":
        figures["warning"] = "the batch ended before the interactive run did: use more --batch-lines"
    (await client.post(f"/batches/{batch_id}/cancel")).raise_for_status()
    return figures


async def measure(base_url: str, args: argparse.Namespace) -> dict[str, Any]:
    texts = Texts()
    async with http_client(base_url, None, 16) as client:
        warm = await run_level(client, GENERATOR, [_messages(texts, 90_000 + i, args.prompt_len) for i in range(4)],
                               args.output_len, 4)
        if warm.failures:
            raise RuntimeError(f"warm-up failed: {warm.requests[0].error}")
        alone = await interactive(client, texts, args.requests, args.prompt_len, args.output_len, offset=0)
        engine = await run_level(client, GENERATOR,
                                 [_messages(texts, 10_000 + i, args.prompt_len) for i in range(args.engine_requests)],
                                 args.output_len, 16)
        if engine.failures:
            raise RuntimeError(f"{engine.failures} requests failed at c=16: {engine.requests[0].error}")
        batch = await batch_alone(client, _batch_file(texts, args.alone_lines, args.prompt_len, args.output_len,
                                                      offset=20_000))
        during = await during_batch(client, texts, _batch_file(texts, args.batch_lines, args.prompt_len,
                                                               args.output_len, offset=30_000),
                                    args.requests, args.prompt_len, args.output_len)
    return {"interactive_alone": alone, "engine_c16_tps": engine.output_tps, "batch_alone": batch,
            "interactive_during_batch": during,
            "ttft_ratio": during["ttft"]["p50"] / alone["ttft"]["p50"],
            "throughput_ratio": batch["tps"] / engine.output_tps}


def report(figures: dict[str, Any]) -> str:
    alone, during = figures["interactive_alone"], figures["interactive_during_batch"]
    ttft_ok = figures["ttft_ratio"] <= TTFT_TARGET
    tps_ok = figures["throughput_ratio"] >= THROUGHPUT_TARGET
    rows = [
        ["interactive TTFT p50, c=4 (s)", alone["ttft"]["p50"], during["ttft"]["p50"], figures["ttft_ratio"],
         f"<= {TTFT_TARGET}", "met" if ttft_ok else "missed"],
        ["interactive TTFT p99, c=4 (s)", alone["ttft"]["p99"], during["ttft"]["p99"],
         during["ttft"]["p99"] / alone["ttft"]["p99"], "", ""],
        ["output tok/s: engine c=16 vs batch alone", figures["engine_c16_tps"], figures["batch_alone"]["tps"],
         figures["throughput_ratio"], f">= {THROUGHPUT_TARGET}", "met" if tps_ok else "missed"],
    ]
    lines = [table(["measure", "reference", "with the batch", "ratio", "target", ""], rows)]
    lines.append(f"\nbatch alone: {figures['batch_alone']['lines']} lines, {figures['batch_alone']['tokens']} output "
                 f"tokens in {figures['batch_alone']['wall_s']:.1f} s; the batch running during the interactive run "
                 f"had answered {during['batch_done']} lines ({during['batch_status']}).")
    if "warning" in during:
        lines.append(f"warning: {during['warning']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="A small run: 120 batch lines, 16 interactive "
                        "requests, 32 output tokens.")
    parser.add_argument("--batch-lines", type=int, default=2000, help="Lines of the batch the interactive run "
                        "goes beside.")
    parser.add_argument("--alone-lines", type=int, default=500, help="Lines of the batch whose throughput is "
                        "measured alone.")
    parser.add_argument("--requests", type=int, default=64, help="Interactive requests per interactive run.")
    parser.add_argument("--engine-requests", type=int, default=128, help="Requests of the c=16 run.")
    parser.add_argument("--prompt-len", type=int, default=128, help="Prompt tokens of every request.")
    parser.add_argument("--output-len", type=int, default=64, help="Output tokens of every request.")
    parser.add_argument("--threads", type=int, default=2, help="The server's compute threads (default 2, as the other benchmarks).")
    parser.add_argument("--device", default=None, help="MAAS_DEVICE for the server (cpu, cuda).")
    parser.add_argument("--base-url", default=None, help="Measure a running server instead (keyless).")
    parser.add_argument("--json", type=Path, default=None, help="Also write the figures here.")
    args = parser.parse_args(argv)
    if args.quick:
        args.batch_lines, args.alone_lines, args.requests, args.engine_requests, args.output_len = 120, 120, 16, 48, 32
    host = machine()
    print(host, flush=True)
    env = {"MAAS_DEVICE": args.device} if args.device else {}
    with server(GENERATOR, args.threads, args.base_url, extra_env=env) as url:
        figures = asyncio.run(measure(url, args))
    print(report(figures))
    if args.json is not None:
        args.json.write_text(json.dumps({"machine": host, "args": {k: str(v) for k, v in vars(args).items()},
                                         **figures}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
