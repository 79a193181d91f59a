"""Online serving benchmark: the reference server under concurrent streaming load, against
what the same model does in-process with plain `model.generate()`.

The server is driven over real HTTP with streaming `POST /v1/completions`, one closed loop
per concurrency level (`--concurrency` requests in flight until `--num-requests` are done),
after a warm-up. The client is httpx with the SSE lines parsed by hand, not the SDK, so its
own cost per chunk stays a `json.loads`. Metrics follow vLLM's `benchmark_serving`:

- TTFT: request sent to the first chunk carrying text;
- TPOT: per request, (E2EL - TTFT) / (output tokens - 1);
- ITL: every gap between consecutive chunks carrying text;
- E2EL: request sent to the last chunk carrying text;
- output tokens/s: all output tokens (from the server's `usage`) / wall time of the run.

Every request asks for exactly `--output-len` tokens (`min_tokens = max_tokens`, greedy), so
runs compare like with like. Two in-process references use the same model, dtype and thread
count, in a child process that only runs while the server is idle: the naive figure first,
then each level's limit right before the server runs that level, so that drift in the
machine's speed hits both sides of each ratio alike:

- naive: the requests served one at a time by `model.generate()`;
- limit: one fixed, left-padded batch of N = concurrency prompts through `model.generate()`,
  which is what batching can reach at best for that many sequences.

    python -m bench.serving                       # full sweep, a few minutes on 2 cores
    python -m bench.serving --quick               # 8 requests at concurrency 1 and 8
    python -m bench.serving --base-url http://host:8000/v1 --skip-references
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import statistics
import sys
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench._common import GENERATOR, child, machine, prompts, server, summary, table


@dataclass
class RequestResult:
    ok: bool = False
    error: str = ""
    output_tokens: int = 0
    ttft: float = math.nan
    e2el: float = math.nan
    itl: list[float] = field(default_factory=list)

    @property
    def tpot(self) -> float:
        return (self.e2el - self.ttft) / (self.output_tokens - 1) if self.output_tokens > 1 else math.nan


@dataclass
class RunResult:
    concurrency: int
    wall_s: float
    requests: list[RequestResult]

    @property
    def succeeded(self) -> list[RequestResult]:
        return [r for r in self.requests if r.ok]

    @property
    def output_tps(self) -> float:
        return sum(r.output_tokens for r in self.succeeded) / self.wall_s

    @property
    def request_rate(self) -> float:
        return len(self.succeeded) / self.wall_s

    @property
    def failures(self) -> int:
        return len(self.requests) - len(self.succeeded)

    def stats(self) -> dict[str, dict[str, float]]:
        ok = self.succeeded
        return {
            "ttft": summary([r.ttft for r in ok]),
            "tpot": summary([r.tpot for r in ok if not math.isnan(r.tpot)]),
            "itl": summary([gap for r in ok for gap in r.itl]),
            "e2el": summary([r.e2el for r in ok]),
        }


# ----- the HTTP client -----

async def one_request(client: httpx.AsyncClient, model: str, prompt: str, output_len: int,
                      schema: dict[str, Any] | None = None) -> RequestResult:
    """One streaming completion, timed per vLLM's definitions. With `schema`, its output is
    constrained to it (and ends when the document does, `output_len` being only a cap)."""
    body: dict[str, Any] = {"model": model, "prompt": prompt, "max_tokens": output_len, "min_tokens": output_len,
                            "temperature": 0, "stream": True, "stream_options": {"include_usage": True}}
    if schema is not None:
        body["structured_outputs"] = {"json": schema}
        del body["min_tokens"]
    result = RequestResult()
    start = last = time.perf_counter()
    try:
        async with client.stream("POST", "/completions", json=body) as response:
            if response.status_code != 200:
                result.error = f"HTTP {response.status_code}: {(await response.aread())[:200]!r}"
                return result
            async for line in response.aiter_lines():
                if not line.startswith("data: "):
                    continue
                data = line[6:]
                if data == "[DONE]":
                    break
                chunk = json.loads(data)
                if "error" in chunk:
                    result.error = str(chunk["error"].get("message", chunk["error"]))
                    return result
                choices = chunk.get("choices")
                if choices and choices[0].get("text"):
                    now = time.perf_counter()
                    if math.isnan(result.ttft):
                        result.ttft = now - start
                    else:
                        result.itl.append(now - last)
                    last = now
                elif chunk.get("usage"):
                    result.output_tokens = int(chunk["usage"]["completion_tokens"])
    except httpx.HTTPError as exc:
        result.error = f"{type(exc).__name__}: {exc}"
        return result
    result.e2el = last - start
    if math.isnan(result.ttft):
        result.error = "no text in the stream"
    elif result.output_tokens != output_len and schema is None:
        result.error = f"{result.output_tokens} output tokens instead of {output_len}"
    else:
        result.ok = True
    return result


async def run_level(client: httpx.AsyncClient, model: str, texts: list[str], output_len: int,
                    concurrency: int, schemas: list[dict[str, Any]] | None = None) -> RunResult:
    """All `texts` as requests (the i-th constrained by `schemas[i]` if given), at most
    `concurrency` in flight at any time."""
    pending = iter(enumerate(texts))
    results: list[RequestResult] = []

    async def worker() -> None:
        for i, prompt in pending:  # a shared iterator: each prompt goes to exactly one worker
            schema = schemas[i] if schemas else None
            results.append(await one_request(client, model, prompt, output_len, schema))

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return RunResult(concurrency, time.perf_counter() - start, results)


def http_client(base_url: str, api_key: str | None, level: int) -> httpx.AsyncClient:
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    limits = httpx.Limits(max_connections=level + 2, max_keepalive_connections=level + 2)
    return httpx.AsyncClient(base_url=base_url, headers=headers, limits=limits, timeout=httpx.Timeout(600.0))


async def run_server_level(base_url: str, api_key: str | None, model: str, texts: list[str], output_len: int,
                           level: int, warm_up: bool) -> RunResult:
    """One concurrency level over a fresh connection pool (after a warm-up, if asked)."""
    async with http_client(base_url, api_key, level) as client:
        if warm_up:  # a few concurrent requests, on other prompts than the measured ones
            warm = await run_level(client, model, [f"Warm-up {i}: the weather today is" for i in range(2)],
                                   output_len, 2)
            if warm.failures:
                raise RuntimeError(f"warm-up failed: {warm.requests[0].error or warm.requests[1].error}")
        return await run_level(client, model, texts, output_len, level)


# ----- in-process references (run in a child process) -----

# The child process's loaded model and tokenized prompts, kept between calls.
_ref: dict[str, Any] = {}


def _load_reference(dtype: str, threads: int, texts: list[str]) -> None:
    import torch

    from reference_server.inference.loading import (
        configure_threads,
        default_specs,
        load_model,
        resolve_device,
    )
    from reference_server.settings import Settings

    warnings.filterwarnings("ignore")
    configure_threads(threads)
    settings = Settings()
    spec = next(s for s in default_specs() if s.id == GENERATOR)
    spec.dtype = dtype
    loaded = load_model(spec, cache_dir=settings.cache_dir, device=resolve_device(settings.device))
    tok = loaded.tokenizer
    _ref.update(torch=torch, loaded=loaded, ids=[list(tok(t, add_special_tokens=True)["input_ids"]) for t in texts],
                pad=tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id)
    _generate(_ref["ids"][:2], 8)  # warm-up


def _generate(batch: list[list[int]], tokens: int) -> float:
    """Seconds for one left-padded `model.generate()` call producing exactly `tokens` per row."""
    torch, loaded, pad = _ref["torch"], _ref["loaded"], _ref["pad"]
    width = max(len(p) for p in batch)
    input_ids = torch.tensor([[pad] * (width - len(p)) + p for p in batch], device=loaded.device)
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in batch], device=loaded.device)
    start = time.perf_counter()
    with torch.inference_mode():
        out = loaded.model.generate(input_ids=input_ids, attention_mask=mask, max_new_tokens=tokens,
                                    min_new_tokens=tokens, do_sample=False, pad_token_id=pad)
    elapsed = time.perf_counter() - start
    assert out.shape[1] - width == tokens, "generate() stopped early"
    return elapsed


def _naive(output_len: int) -> float:
    """Tokens/s serving every prompt in turn, one `generate()` each."""
    ids = _ref["ids"]
    return len(ids) * output_len / sum(_generate([p], output_len) for p in ids)


def _limit(level: int, output_len: int, repeats: int) -> float:
    """Tokens/s of one fixed batch of `level` prompts (median of `repeats` runs)."""
    ids = _ref["ids"]
    batch = (ids * math.ceil(level / len(ids)))[:level]
    return statistics.median(level * output_len / _generate(batch, output_len) for _ in range(repeats))


class References:
    """The naive and limit references, in a child process that loads the model once and then
    stays idle while the server works, so each concurrency level's limit is measured right
    before the server runs that level."""

    def __init__(self, dtype: str, threads: int, texts: list[str], output_len: int, repeats: int) -> None:
        self.output_len, self.repeats = output_len, repeats
        self.pool = child()
        self.pool.submit(_load_reference, dtype, threads, texts).result()

    def naive(self) -> float:
        return self.pool.submit(_naive, self.output_len).result()

    def limit(self, level: int) -> float:
        return self.pool.submit(_limit, level, self.output_len, self.repeats).result()

    def close(self) -> None:
        self.pool.shutdown()


# ----- report -----

def report(runs: list[RunResult], refs: dict[str, Any] | None) -> str:
    headers = ["c", "ours tok/s", "naive tok/s", "limit tok/s", "ours/naive", "ours/limit",
               "TTFT p50 ms", "TTFT p99 ms", "TPOT p50 ms", "ITL p50 ms", "ITL p99 ms",
               "E2E p50 s", "E2E p99 s", "req/s", "failures"]
    rows = []
    for run in runs:
        s = run.stats()
        naive = refs["naive"] if refs else math.nan
        limit = refs["limit"].get(run.concurrency, math.nan) if refs else math.nan
        rows.append([run.concurrency, run.output_tps, naive, limit, run.output_tps / naive,
                     run.output_tps / limit, s["ttft"]["p50"] * 1e3, s["ttft"]["p99"] * 1e3,
                     s["tpot"]["p50"] * 1e3, s["itl"]["p50"] * 1e3, s["itl"]["p99"] * 1e3,
                     s["e2el"]["p50"], s["e2el"]["p99"], run.request_rate, run.failures])
    detail_headers = ["c"] + [f"{m} {k}" for m in ("TTFT", "TPOT", "ITL", "E2E") for k in ("mean", "p50", "p99")]
    detail = []
    for run in runs:
        s = run.stats()
        detail.append([run.concurrency] + [s[m][k] * (1 if m == "e2el" else 1e3)
                                           for m in ("ttft", "tpot", "itl", "e2el") for k in ("mean", "p50", "p99")])
    return (table(headers, rows) + "\n\nLatency detail (TTFT, TPOT, ITL in ms; E2E in s):\n\n"
            + table(detail_headers, detail))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-url", help="Benchmark this running server (…/v1) instead of starting one.")
    parser.add_argument("--api-key", help="Bearer key for --base-url.")
    parser.add_argument("--model", default=GENERATOR)
    parser.add_argument("--threads", type=int, default=2, help="torch threads, server and references (default 2).")
    parser.add_argument("--dtype", default="float32", help="float32, bfloat16 (default float32).")
    parser.add_argument("--num-requests", type=int, default=32)
    parser.add_argument("--output-len", type=int, default=64)
    parser.add_argument("--concurrency", default="1,2,4,8,16", help="Comma-separated levels.")
    parser.add_argument("--repeats", type=int, default=3, help="Runs per fixed-batch reference (median).")
    parser.add_argument("--skip-references", action="store_true", help="Only measure the server.")
    parser.add_argument("--quick", action="store_true", help="8 requests at concurrency 1 and 8, one repeat.")
    parser.add_argument("--json", type=Path, help="Also write every figure to this file.")
    parser.add_argument("--server-log", type=Path, help="Keep the started server's log here.")
    parser.add_argument("workload", nargs="?", default="throughput", choices=["throughput", "structured"],
                        help="throughput (default): the concurrency sweep; structured: JSON-schema-constrained "
                             "requests against unconstrained ones, compile times, isolation (bench/serving_structured.py).")
    args = parser.parse_args(argv)
    if args.workload == "structured":
        from bench.serving_structured import run as run_structured

        return run_structured(args)
    if args.quick:
        args.num_requests, args.concurrency, args.repeats = 8, "1,8", 1
    levels = [int(c) for c in args.concurrency.split(",")]
    texts = prompts(args.num_requests)

    host = machine()
    print(f"# serving: {args.model}, {args.num_requests} requests x {args.output_len} output tokens, "
          f"{args.threads} threads, {args.dtype}; {host}", file=sys.stderr)
    refs = None if args.skip_references else References(args.dtype, args.threads, texts, args.output_len,
                                                         args.repeats)
    runs: list[RunResult] = []
    figures: dict[str, Any] = {"naive": math.nan, "limit": {}}
    try:
        with server(args.model, args.threads, args.base_url, {"MAAS_DTYPE": args.dtype}, args.server_log) as url:
            if refs is not None:
                figures["naive"] = refs.naive()
            for level in levels:
                if refs is not None:
                    figures["limit"][level] = refs.limit(level)
                run = asyncio.run(run_server_level(url, args.api_key, args.model, texts, args.output_len, level,
                                                   warm_up=not runs))
                print(f"  concurrency {level:>2}: {run.output_tps:6.1f} tok/s, {run.failures} failures, "
                      f"{run.wall_s:.1f} s", file=sys.stderr)
                runs.append(run)
    finally:
        if refs is not None:
            refs.close()

    print(report(runs, figures if refs is not None else None))
    if args.json:
        args.json.write_text(json.dumps({
            "args": {k: str(v) for k, v in vars(args).items()}, "machine": host, "references": figures,
            "runs": [{"concurrency": r.concurrency, "wall_s": r.wall_s, "output_tps": r.output_tps,
                      "stats": r.stats(), "requests": [asdict(q) for q in r.requests]} for r in runs],
        }, indent=1))
    return 1 if any(r.failures for r in runs) else 0


if __name__ == "__main__":
    sys.exit(main())
