"""Online serving benchmark: the reference server under the workloads people send, against
what the same model does in-process with plain `model.generate()`.

The server is driven over real HTTP with streaming requests (httpx, SSE lines parsed by hand,
so the client's own cost per chunk stays a `json.loads`). Metrics follow vLLM's
`benchmark_serving`: TTFT (request sent to the first chunk carrying text), TPOT per request
((E2EL - TTFT) / (output tokens - 1)), ITL (every gap between chunks carrying text), E2EL,
and output tokens/s (the server's `usage` tokens / wall time). Every request asks for
exactly its output length (`min_tokens = max_tokens`, greedy), so runs compare like with like.

Named workloads (`--workloads`, all by default):

- `short`: the one-line prompts of `data/prompts.txt`, 64 output tokens, closed loop at each
  `--concurrency` level;
- `mixed`: prompt lengths drawn uniformly from 8 to 512 tokens (windows of
  `data/perplexity.txt`), 64 output tokens, closed loop at each level;
- `long-prompt`: 7 streams decoding while a 2,000-token prompt arrives: the streams' ITL
  before and during its prefill (chunked prefill keeps the latter close to the former);
- `shared-prefix`: chat requests sharing a 400-token system prompt with distinct user turns,
  on a server with prefix reuse and on one without (`MAAS_PREFIX_CACHE_MB=0`): TTFT of each,
  and whether the greedy outputs are identical;
- `poisson`: requests with mixed prompt lengths arriving at `--rate` per second (open loop):
  goodput, the requests per second that meet TTFT <= 1 s and TPOT <= 200 ms.

`short` and `mixed` are compared with two in-process references on the same model, dtype and
thread count, in a child process that only runs while the server is idle, each measured right
before the server runs the same prompts (so drift in the machine's speed hits both sides):

- naive: 4 of the workload's requests served one at a time by `model.generate()`;
- limit: one fixed, left-padded batch of c prompts through `model.generate()`.

    python -m bench.serving                       # every workload, about 6 minutes on 2 cores
    python -m bench.serving --quick               # fewer requests, c = 1 and 8
    python -m bench.serving --workloads mixed --concurrency 8 --json mixed.json
    python -m bench.plots serving mixed.json mixed.png    # throughput and latency, drawn
    python -m bench.serving --base-url http://host:8000/v1 --skip-references
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import statistics
import sys
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench._common import GENERATOR, child, machine, perplexity_text, prompts, server, summary, table

WORKLOADS = ("short", "mixed", "long-prompt", "shared-prefix", "poisson")
# Goodput's service-level objectives (per request).
SLO_TTFT_S, SLO_TPOT_S = 1.0, 0.2
LONG_PROMPT_TOKENS, LONG_PROMPT_STREAMS = 2000, 7
SYSTEM_PROMPT_TOKENS = 400
DTYPES = ("float32", "bfloat16", "float16", "auto")


@dataclass
class RequestResult:
    ok: bool = False
    error: str = ""
    output_tokens: int = 0
    start: float = math.nan  # perf_counter when sent
    ttft: float = math.nan
    e2el: float = math.nan
    itl: list[float] = field(default_factory=list)
    times: list[float] = field(default_factory=list)  # perf_counter of every chunk carrying text
    text: str = ""
    index: int = -1  # the prompt's position in the level's list

    @property
    def tpot(self) -> float:
        return (self.e2el - self.ttft) / (self.output_tokens - 1) if self.output_tokens > 1 else math.nan

    @property
    def meets_slo(self) -> bool:
        return self.ok and self.ttft <= SLO_TTFT_S and not self.tpot > SLO_TPOT_S


@dataclass
class RunResult:
    concurrency: int
    wall_s: float
    requests: list[RequestResult]
    kv: dict[str, float] = field(default_factory=dict)  # KV cache memory while every stream ran

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


# ----- inputs -----

def _tokenizer() -> Any:
    """The generator's tokenizer, to cut prompts of exact token lengths."""
    from reference_server.inference.loading import default_specs, ensure_converted
    from reference_server.inference.loading.gguf import load_tokenizer
    from reference_server.inference.loading.sources import resolve_source
    from reference_server.settings import Settings

    spec = next(s for s in default_specs() if s.id == GENERATOR)
    folder, gguf = resolve_source(spec)
    if gguf is not None:
        folder = ensure_converted(folder, gguf, cache_dir=Settings().cache_dir)
    return load_tokenizer(folder)


class Texts:
    """Prompts cut from the fixed text at token lengths; no two share their first tokens, so
    only the shared-prefix workload can profit from prefix reuse."""

    def __init__(self) -> None:
        self.tok = _tokenizer()
        self.corpus = list(self.tok(perplexity_text(), add_special_tokens=False)["input_ids"])

    def window(self, index: int, length: int) -> str:
        corpus = self.corpus * (length // len(self.corpus) + 2)
        start = (index * 37) % len(self.corpus)
        return f"({index}) " + str(self.tok.decode(corpus[start:start + length]))

    def mixed(self, n: int, seed: int) -> list[str]:
        rng = random.Random(seed)
        return [self.window(seed * 1000 + i, rng.randint(8, 512)) for i in range(n)]


# ----- the HTTP client -----

async def one_request(client: httpx.AsyncClient, model: str, prompt: str | list[dict[str, str]],
                      output_len: int, schema: dict[str, Any] | None = None) -> RequestResult:
    """One streaming completion (a string prompt) or chat completion (messages), timed per
    vLLM's definitions. With `schema`, its output is constrained to it (and ends when the
    document does, `output_len` being only a cap)."""
    chat = not isinstance(prompt, str)
    body: dict[str, Any] = {"model": model, "max_tokens": output_len, "min_tokens": output_len, "temperature": 0,
                            "stream": True, "stream_options": {"include_usage": True}}
    body["messages" if chat else "prompt"] = prompt
    if schema is not None:
        body["structured_outputs"] = {"json": schema}
        del body["min_tokens"]
    result = RequestResult()
    parts: list[str] = []
    result.start = last = time.perf_counter()
    try:
        async with client.stream("POST", "/chat/completions" if chat else "/completions", json=body) as response:
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
                text = (choices[0].get("delta", {}).get("content") if chat else choices[0].get("text")) \
                    if choices else None
                if text:
                    now = time.perf_counter()
                    parts.append(text)
                    result.times.append(now)
                    if math.isnan(result.ttft):
                        result.ttft = now - result.start
                    else:
                        result.itl.append(now - last)
                    last = now
                elif chunk.get("usage"):
                    result.output_tokens = int(chunk["usage"]["completion_tokens"])
    except httpx.HTTPError as exc:
        result.error = f"{type(exc).__name__}: {exc}"
        return result
    result.e2el = last - result.start
    result.text = "".join(parts)
    if math.isnan(result.ttft):
        result.error = "no text in the stream"
    elif result.output_tokens != output_len and schema is None:
        result.error = f"{result.output_tokens} output tokens instead of {output_len}"
    else:
        result.ok = True
    return result


async def run_level(client: httpx.AsyncClient, model: str, texts: list[Any], output_len: int | list[int],
                    concurrency: int, schemas: list[dict[str, Any]] | None = None) -> RunResult:
    """All `texts` as requests (the i-th constrained by `schemas[i]` if given, and asked for
    `output_len[i]` tokens if that is a list), at most `concurrency` in flight at any time."""
    pending = iter(enumerate(texts))
    results: list[RequestResult] = []

    async def worker() -> None:
        for i, prompt in pending:  # a shared iterator: each prompt goes to exactly one worker
            schema = schemas[i] if schemas else None
            length = output_len[i] if isinstance(output_len, list) else output_len
            result = await one_request(client, model, prompt, length, schema)
            result.index = i
            results.append(result)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return RunResult(concurrency, time.perf_counter() - start, results)


def http_client(base_url: str, api_key: str | None, connections: int) -> httpx.AsyncClient:
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    limits = httpx.Limits(max_connections=connections + 2, max_keepalive_connections=connections + 2)
    return httpx.AsyncClient(base_url=base_url, headers=headers, limits=limits, timeout=httpx.Timeout(600.0))


async def _warm_up(client: httpx.AsyncClient, model: str, output_len: int, prompt: Any = None) -> None:
    texts = [prompt] * 2 if prompt is not None else [f"Warm-up {i}: the weather today is" for i in range(2)]
    warm = await run_level(client, model, texts, min(output_len, 16), 2)
    if warm.failures:
        raise RuntimeError(f"warm-up failed: {warm.requests[0].error or warm.requests[1].error}")


async def run_closed(base_url: str, api_key: str | None, model: str, texts: list[Any], output_len: int,
                     level: int, warm_up: Any = False) -> RunResult:
    """One closed-loop level over a fresh connection pool, after a warm-up if asked (True, or
    the prompt to warm up with). The server's KV cache gauges are sampled meanwhile."""
    async with http_client(base_url, api_key, level) as client:
        if warm_up is not False:
            await _warm_up(client, model, output_len, None if warm_up is True else warm_up)
        samples: list[tuple[float, float, float]] = []
        probe = asyncio.create_task(_sample_kv(client, base_url, model, samples))
        try:
            run = await run_level(client, model, texts, output_len, level)
        finally:
            probe.cancel()
        full = [(alloc, live) for running, alloc, live in samples if running >= level and live > 0]
        run.kv = {"samples": len(full), "allocated_over_live": statistics.median(a / b for a, b in full)
                  if full else math.nan}
        return run


async def _sample_kv(client: httpx.AsyncClient, base_url: str, model: str,
                     out: list[tuple[float, float, float]]) -> None:
    """(running, allocated, live) from `/metrics` every 0.25 s: KV memory against what the live
    sequences hold."""
    root = base_url.removesuffix("/v1")
    names = ("maas_num_requests_running", "maas_kv_cache_allocated_tokens", "maas_kv_cache_live_tokens")
    while True:
        await asyncio.sleep(0.25)
        try:
            text = (await client.get(f"{root}/metrics")).text
        except httpx.HTTPError:
            continue
        values = {}
        for line in text.splitlines():
            name, _, rest = line.partition("{")
            if name in names and f'model="{model}"' in rest:
                values[name] = float(rest.rsplit(" ", 1)[1])
        if len(values) == len(names):
            out.append((values[names[0]], values[names[1]], values[names[2]]))


async def run_long_prompt(base_url: str, api_key: str | None, model: str, streams: list[str], long_prompt: str,
                          output_len: int) -> dict[str, Any]:
    """`streams` decoding; once each has streamed a few tokens, `long_prompt` arrives. The
    streams' gaps are split into those that ended before it was sent and those that overlap
    the time until its first token (its prefill)."""
    async with http_client(base_url, api_key, len(streams) + 1) as client:
        await _warm_up(client, model, output_len)
        tasks = [asyncio.create_task(one_request(client, model, s, output_len)) for s in streams]
        await asyncio.sleep(0.2)
        long_task = asyncio.create_task(_after_tokens(client, model, long_prompt, tasks))
        results = await asyncio.gather(*tasks)
        long = await long_task
    sent, first = long.start, long.start + long.ttft
    before = [b - a for r in results for a, b in zip(r.times, r.times[1:]) if b < sent]
    during = [b - a for r in results for a, b in zip(r.times, r.times[1:]) if b > sent and a < first]
    out = {"before": summary(before), "during": summary(during), "long_ttft_s": long.ttft,
           "long_ok": long.ok, "failures": sum(not r.ok for r in results) + (not long.ok),
           "gaps_before": len(before), "gaps_during": len(during)}
    out["ratio"] = out["during"]["p99"] / out["before"]["p50"]
    return out


async def _after_tokens(client: httpx.AsyncClient, model: str, prompt: str, tasks: list[Any]) -> RequestResult:
    await asyncio.sleep(2.0)  # the streams are prefilled and decoding by now
    return await one_request(client, model, prompt, 4)


async def run_open_loop(base_url: str, api_key: str | None, model: str, texts: list[str], output_len: int,
                        rate: float, seed: int) -> RunResult:
    """Requests sent at exponentially distributed intervals (mean 1 / `rate`), whatever the
    server's progress (open loop)."""
    rng = random.Random(seed)
    async with http_client(base_url, api_key, len(texts)) as client:
        await _warm_up(client, model, output_len)
        tasks = []
        start = time.perf_counter()
        for text in texts:
            tasks.append(asyncio.create_task(one_request(client, model, text, output_len)))
            await asyncio.sleep(rng.expovariate(rate))
        results = list(await asyncio.gather(*tasks))
    return RunResult(0, time.perf_counter() - start, results)


# ----- in-process references (run in a child process) -----

# The child process's loaded model, kept between calls.
_ref: dict[str, Any] = {}


def _load_reference(dtype: str, threads: int, packed: bool = False) -> None:
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
    spec.dtype = dtype  # type: ignore[assignment]
    loaded = load_model(spec, cache_dir=settings.cache_dir, device=resolve_device(settings.device))
    if packed:  # the server's own linear layout (see --packed-references)
        from reference_server.inference.engine.packed_linear import pack_linears

        pack_linears(loaded.model, "on", rows=16)
    tok = loaded.tokenizer
    _ref.update(torch=torch, loaded=loaded, pad=tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id)
    _generate([_ids("Warm-up: the weather today is")] * 2, 8)


def _ids(text: str) -> list[int]:
    return list(_ref["loaded"].tokenizer(text, add_special_tokens=True)["input_ids"])


def _generate(batch: list[list[int]], tokens: int) -> float:
    """Seconds for one left-padded `model.generate()` call producing exactly `tokens` per row."""
    return _generate_tokens(batch, tokens)[0]


def _generate_tokens(batch: list[list[int]], tokens: int) -> tuple[float, list[list[int]]]:
    """`_generate`, with the tokens each row generated."""
    torch, loaded, pad = _ref["torch"], _ref["loaded"], _ref["pad"]
    width = max(len(p) for p in batch)
    input_ids = torch.tensor([[pad] * (width - len(p)) + p for p in batch], device=loaded.device)
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in batch], device=loaded.device)
    sync = torch.cuda.synchronize if loaded.device.startswith("cuda") else (lambda: None)
    sync()
    start = time.perf_counter()
    with torch.inference_mode():
        out = loaded.model.generate(input_ids=input_ids, attention_mask=mask, max_new_tokens=tokens,
                                    min_new_tokens=tokens, do_sample=False, pad_token_id=pad)
    sync()
    elapsed = time.perf_counter() - start
    assert out.shape[1] - width == tokens, "generate() stopped early"
    return elapsed, out[:, width:].tolist()


def _naive(texts: list[str], output_len: int) -> float:
    """Tokens/s serving `texts` in turn, one `generate()` each."""
    ids = [_ids(t) for t in texts]
    return len(ids) * output_len / sum(_generate([p], output_len) for p in ids)


def _limit(texts: list[str], output_len: int, repeats: int) -> float:
    """Tokens/s of one fixed batch of all `texts` (median of `repeats` runs)."""
    ids = [_ids(t) for t in texts]
    return statistics.median(len(ids) * output_len / _generate(ids, output_len) for _ in range(repeats))


def _floor(threads: int) -> dict[str, Any]:
    from bench.floor import measure

    return measure(_ref["loaded"].model, threads).to_dict()


def _greedy(texts: list[str], output_len: int) -> dict[str, list[list[int]]]:
    """Greedy tokens of plain transformers for each text alone and for all in one batch."""
    ids = [_ids(t) for t in texts]
    return {"alone": [_generate_tokens([p], output_len)[1][0] for p in ids],
            "batch": _generate_tokens(ids, output_len)[1]}


def _encode(texts: list[str]) -> list[list[int]]:
    """Tokens of generated texts (for agreement with tokens generated in-process)."""
    tok = _ref["loaded"].tokenizer
    return [list(tok(t, add_special_tokens=False)["input_ids"]) for t in texts]


def _decode(rows: list[list[int]]) -> list[str]:
    return [str(_ref["loaded"].tokenizer.decode(r, skip_special_tokens=True)) for r in rows]


def _llama_cpp(prompt: str, output_len: int, threads: int) -> float | str:
    from bench.floor import llama_cpp_tps
    from reference_server.inference.loading import default_specs
    from reference_server.inference.loading.sources import resolve_source

    folder, gguf = resolve_source(next(s for s in default_specs() if s.id == GENERATOR))
    return llama_cpp_tps(folder / gguf if gguf else None, prompt, output_len, threads)


class References:
    """The naive and limit references, in a child process that loads the model once and then
    stays idle while the server works; the floor, the greedy tokens the server's must equal,
    and llama.cpp are measured there too, before the server starts."""

    def __init__(self, dtype: str, threads: int, output_len: int, repeats: int, packed: bool = False) -> None:
        self.output_len, self.repeats = output_len, repeats
        self.pool = child()
        self.pool.submit(_load_reference, dtype, threads, packed).result()

    def naive(self, texts: list[str]) -> float:
        return self.pool.submit(_naive, texts, self.output_len).result()

    def limit(self, texts: list[str]) -> float:
        return self.pool.submit(_limit, texts, self.output_len, self.repeats).result()

    def floor(self, threads: int) -> dict[str, Any]:
        return self.pool.submit(_floor, threads).result()

    def greedy(self, texts: list[str], output_len: int) -> dict[str, list[list[int]]]:
        return self.pool.submit(_greedy, texts, output_len).result()

    def encode(self, texts: list[str]) -> list[list[int]]:
        return self.pool.submit(_encode, texts).result()

    def decode(self, rows: list[list[int]]) -> list[str]:
        return self.pool.submit(_decode, rows).result()

    def llama_cpp(self, prompt: str, output_len: int, threads: int) -> float | str:
        return self.pool.submit(_llama_cpp, prompt, output_len, threads).result()

    def close(self) -> None:
        self.pool.shutdown()


# ----- the workloads -----

@dataclass
class Plan:
    levels: list[int]
    output_len: int
    requests_per_stream: int  # closed loop: requests per level = max(4, this x level)
    repeats: int
    rate: float
    poisson_requests: int
    shared_requests: int
    quality_prompts: int = 16  # greedy outputs held against plain transformers, each alone


def requests_at(level: int, plan: Plan) -> int:
    return max(4, plan.requests_per_stream * level)


def closed_workload(name: str, url: str, args: argparse.Namespace, plan: Plan, texts: Texts,
                    refs: References | None) -> dict[str, Any]:
    """`short` or `mixed`: each level against the naive and fixed-batch references."""
    out: dict[str, Any] = {"levels": []}
    naive = math.nan
    for i, level in enumerate(plan.levels):
        n = requests_at(level, plan)
        pool = prompts(n) if name == "short" else texts.mixed(n, seed=level)
        entry: dict[str, Any] = {"concurrency": level, "requests": n}
        if refs is not None:
            if i == 0:  # once per workload, on the first level's first 4 prompts
                naive = refs.naive(pool[:4])
            entry["naive_tps"] = naive
            entry["limit_tps"] = refs.limit(pool[:level])
        run = asyncio.run(run_closed(url, args.api_key, args.model, pool, plan.output_len, level, warm_up=i == 0))
        entry.update(_run_figures(run))
        out["levels"].append(entry)
        _progress(f"{name} c={level}: {run.output_tps:.1f} tok/s, {run.failures} failures, {run.wall_s:.1f} s")
    return out


def _run_figures(run: RunResult) -> dict[str, Any]:
    return {"output_tps": run.output_tps, "wall_s": run.wall_s, "request_rate": run.request_rate,
            "failures": run.failures, "stats": run.stats(), "kv": run.kv,
            "results": [{k: v for k, v in asdict(r).items() if k not in ("times", "text")} for r in run.requests]}


def long_prompt_workload(url: str, args: argparse.Namespace, plan: Plan, texts: Texts) -> dict[str, Any]:
    streams = prompts(LONG_PROMPT_STREAMS)
    long_prompt = texts.window(7, LONG_PROMPT_TOKENS)
    out = asyncio.run(run_long_prompt(url, args.api_key, args.model, streams, long_prompt, plan.output_len * 3))
    _progress(f"long-prompt: ITL p50 before {out['before']['p50'] * 1e3:.0f} ms, p99 during "
              f"{out['during']['p99'] * 1e3:.0f} ms ({out['ratio']:.2f}x)")
    return out


def shared_prefix_chats(texts: Texts, n: int) -> tuple[list[list[dict[str, str]]], list[dict[str, str]]]:
    system = "You are a careful assistant. Use this background:\n" + texts.window(0, SYSTEM_PROMPT_TOKENS)
    questions = prompts(n + 1)
    chats = [[{"role": "system", "content": system}, {"role": "user", "content": q}] for q in questions]
    return chats[1:], chats[0]


def shared_prefix_workload(url: str, args: argparse.Namespace, plan: Plan, texts: Texts) -> dict[str, Any]:
    """The same chats on this server (prefix reuse on) and on a second one with it off."""
    chats, warm = shared_prefix_chats(texts, plan.shared_requests)
    # One at a time: TTFT is then the prefill alone, and each greedy output is computed in a batch
    # of one on both servers, so any difference between them comes from the reuse.
    level, output_len = 1, 32
    on = asyncio.run(run_closed(url, args.api_key, args.model, chats, output_len, level, warm_up=warm))
    with server(args.model, args.threads, None, {**_server_env(args), "MAAS_PREFIX_CACHE_MB": "0"}) as off_url:
        off = asyncio.run(run_closed(off_url, args.api_key, args.model, chats, output_len, level, warm_up=warm))
    same = sum(a.ok and a.text == b.text for a, b in zip(on.requests, off.requests))
    out = {"on": _run_figures(on), "off": _run_figures(off), "concurrency": level,
           "identical": same == len(chats), "identical_count": same}
    out["ttft_gain"] = out["off"]["stats"]["ttft"]["p50"] / out["on"]["stats"]["ttft"]["p50"]
    _progress(f"shared-prefix: TTFT p50 {out['on']['stats']['ttft']['p50'] * 1e3:.0f} ms with reuse, "
              f"{out['off']['stats']['ttft']['p50'] * 1e3:.0f} ms without; identical: {out['identical']}")
    return out


def poisson_workload(url: str, args: argparse.Namespace, plan: Plan, texts: Texts) -> dict[str, Any]:
    pool = texts.mixed(plan.poisson_requests, seed=99)
    run = asyncio.run(run_open_loop(url, args.api_key, args.model, pool, plan.output_len, plan.rate, seed=5))
    good = sum(r.meets_slo for r in run.requests)
    out = {"rate": plan.rate, "goodput": good / run.wall_s, "slo_met": good, **_run_figures(run)}
    _progress(f"poisson at {plan.rate}/s: goodput {out['goodput']:.2f} req/s ({good}/{len(run.requests)} met the SLO)")
    return out


def _progress(line: str) -> None:
    print(f"  {line}", file=sys.stderr, flush=True)


def _server_env(args: argparse.Namespace) -> dict[str, str]:
    return {"MAAS_DTYPE": args.dtype}


def _agreement(rows: list[list[int]], reference: list[list[int]], length: int) -> float:
    """Mean share of `length` tokens each row shares with its reference before they first differ
    (a divergence changes every later token, so later matches are not counted)."""
    def common(a: list[int], b: list[int]) -> int:
        return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b), length))
    return statistics.mean(min(common(a, b), length) / length for a, b in zip(rows, reference))


def quality_check(url: str, args: argparse.Namespace, plan: Plan, quality: dict[str, Any],
                  refs: References) -> dict[str, Any]:
    """The server's greedy outputs (8 streams at a time) against plain transformers' for each
    prompt alone: equal in float32, token for token; in half precision, their agreement beside
    the agreement of transformers' own batch with its own outputs alone (what the rounding of
    another batch shape gives on its own)."""
    run = asyncio.run(run_closed(url, args.api_key, args.model, quality["texts"], plan.output_len, 8))
    texts = [r.text for r in sorted(run.requests, key=lambda r: r.index)]
    expected = refs.decode(quality["alone"])
    out = {"prompts": len(texts), "tokens": plan.output_len, "failures": run.failures,
           "equal": sum(a == b for a, b in zip(texts, expected)),
           "agreement": _agreement(refs.encode(texts), refs.encode(expected), plan.output_len),
           "transformers_batch_agreement": _agreement(quality["batch"], quality["alone"], plan.output_len)}
    _progress(f"quality: {out['equal']}/{out['prompts']} greedy outputs equal to transformers alone, "
              f"agreement {out['agreement']:.1%} (transformers' own batch: {out['transformers_batch_agreement']:.1%})")
    return out


# ----- report -----

def report(figures: dict[str, Any]) -> str:
    parts: list[str] = []
    for name in ("short", "mixed"):
        if name not in figures:
            continue
        rows = []
        for e in figures[name]["levels"]:
            s = e["stats"]
            naive, limit = e.get("naive_tps", math.nan), e.get("limit_tps", math.nan)
            rows.append([e["concurrency"], e["requests"], e["output_tps"], naive, limit, e["output_tps"] / naive,
                         e["output_tps"] / limit, s["ttft"]["p50"] * 1e3, s["ttft"]["p99"] * 1e3,
                         s["tpot"]["p50"] * 1e3, s["itl"]["p50"] * 1e3, s["itl"]["p99"] * 1e3,
                         e.get("kv", {}).get("allocated_over_live", math.nan), e["failures"]])
        parts.append(f"### {name}\n\n" + table(
            ["c", "requests", "ours tok/s", "naive tok/s", "limit tok/s", "ours/naive", "ours/limit", "TTFT p50 ms",
             "TTFT p99 ms", "TPOT p50 ms", "ITL p50 ms", "ITL p99 ms", "KV alloc/live", "failures"], rows))
    if "long-prompt" in figures:
        f = figures["long-prompt"]
        parts.append("### long-prompt\n\n" + table(
            ["streams", "prompt tokens", "ITL p50 before ms", "ITL p99 before ms", "ITL p50 during ms",
             "ITL p99 during ms", "p99 during / p50 before", "long prompt TTFT s", "failures"],
            [[LONG_PROMPT_STREAMS, LONG_PROMPT_TOKENS, f["before"]["p50"] * 1e3, f["before"]["p99"] * 1e3,
              f["during"]["p50"] * 1e3, f["during"]["p99"] * 1e3, f["ratio"], f["long_ttft_s"], f["failures"]]]))
    if "shared-prefix" in figures:
        f = figures["shared-prefix"]
        rows = [[label, f["concurrency"], f[k]["output_tps"], f[k]["stats"]["ttft"]["p50"] * 1e3,
                 f[k]["stats"]["ttft"]["p99"] * 1e3, f[k]["stats"]["tpot"]["p50"] * 1e3, f[k]["failures"]]
                for label, k in (("on", "on"), ("off", "off"))]
        parts.append("### shared-prefix\n\n" + table(
            ["prefix reuse", "c", "tok/s", "TTFT p50 ms", "TTFT p99 ms", "TPOT p50 ms", "failures"], rows)
            + f"\n\nTTFT p50 off / on: {f['ttft_gain']:.2f}x; greedy outputs identical on and off: "
              f"{f['identical_count']} of {len(f['on']['results'])}")
    if "poisson" in figures:
        f = figures["poisson"]
        s = f["stats"]
        parts.append("### poisson\n\n" + table(
            ["rate req/s", "requests", "goodput req/s", "met SLO", "tok/s", "TTFT p50 ms", "TTFT p99 ms",
             "TPOT p50 ms", "TPOT p99 ms", "failures"],
            [[f["rate"], len(f["results"]), f["goodput"], f["slo_met"], f["output_tps"], s["ttft"]["p50"] * 1e3,
              s["ttft"]["p99"] * 1e3, s["tpot"]["p50"] * 1e3, s["tpot"]["p99"] * 1e3, f["failures"]]])
            + f"\n\nSLO: TTFT <= {SLO_TTFT_S:g} s and TPOT <= {SLO_TPOT_S * 1e3:g} ms")
    return "\n\n".join(parts)


def _level(figures: dict[str, Any], concurrency: int) -> dict[str, Any] | None:
    levels = figures.get("short", {}).get("levels", [])
    return next((e for e in levels if e["concurrency"] == concurrency), None)


def floor_report(figures: dict[str, Any], dtype: str) -> str:
    """The floor measured in this run, and the issue's targets as ratios against it and the
    references (`short`'s c = 1 and c = 8 levels: hidden prompts of about 22 tokens)."""
    from bench.floor import Floor

    f = dict(figures["floor"])
    context = f.pop("context")
    floor = Floor(**f)
    rows = []
    for batch in (1, 8):
        step = floor.step_s(batch, context)
        rows.append([batch, floor.weight_bytes / 2**20, step["memory_s"] * 1e3, step["math_s"] * 1e3,
                     step["floor_s"] * 1e3, floor.tps(batch, context)])
    parts = [f"### floor ({floor.dtype}, {floor.threads} threads: reads {floor.read_gbps:.1f} GB/s, "
             f"matmul {floor.matmul_gflops:.0f} GFLOP/s)\n\n" + table(
                 ["batch", "weights read MiB", "memory ms", "dense math ms", "floor ms/step", "floor tok/s"], rows)]
    one, eight = _level(figures, 1), _level(figures, 8)
    targets: list[list[Any]] = []

    def target(name: str, value: float, ratio: float, goal: float | None, when: str) -> None:
        met = "-" if goal is None else "yes" if ratio >= goal else "no"
        targets.append([name, value, f"{ratio:.2f}", "-" if goal is None else f">= {goal:g}", when, met])

    if one is not None:
        target("one stream / floor", one["output_tps"], one["output_tps"] / floor.tps(1, context), 0.5,
               "default dtype")
        target("one stream / naive generate()", one["output_tps"], one["output_tps"] / one.get("naive_tps", math.nan),
               2.0, "float32")
    if eight is not None:
        target("eight streams / fixed batch of 8", eight["output_tps"],
               eight["output_tps"] / eight.get("limit_tps", math.nan), 1.5, "same dtype")
        target("eight streams / 300 tok/s", eight["output_tps"], eight["output_tps"] / 300, 1.0,
               "default dtype, 2 cores")
        target("eight streams / floor", eight["output_tps"], eight["output_tps"] / floor.tps(8, context), None, "-")
    llama = figures.get("llama_cpp")
    if isinstance(llama, float) and one is not None:
        target("one stream / llama.cpp", one["output_tps"], one["output_tps"] / llama, 1.0, "its GGUF, 4-bit")
    parts.append(f"### targets (this run: {dtype})\n\n" + table(
        ["target", "ours tok/s", "ratio", "goal", "applies to", "met"], targets)
        + f"\n\nllama.cpp one stream: {llama if isinstance(llama, str) else f'{llama:.1f} tok/s'}")
    if "quality" in figures:
        q = figures["quality"]
        parts.append(f"### quality\n\n{q['equal']} of {q['prompts']} greedy outputs ({q['tokens']} tokens, 8 "
                     f"streams at a time) equal plain transformers' for each prompt alone (goal in float32: all); "
                     f"tokens agreeing before the first difference: {q['agreement']:.1%}, where transformers' own "
                     f"batch of {q['prompts']} agrees with its outputs alone on {q['transformers_batch_agreement']:.1%}")
    load = os.getloadavg()[0]
    if load > 0.5:
        parts.append(f"The machine was not quiet (load average {load:.2f} now): these ratios do not hold a "
                     "target as met.")
    return "\n\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-url", help="Benchmark this running server (…/v1) instead of starting one.")
    parser.add_argument("--api-key", help="Bearer key for --base-url.")
    parser.add_argument("--model", default=GENERATOR)
    parser.add_argument("--workloads", default=",".join(WORKLOADS), help=f"Comma-separated: {', '.join(WORKLOADS)}.")
    parser.add_argument("--threads", type=int, default=2, help="torch threads, server and references (default 2).")
    parser.add_argument("--dtype", default="float32", help="float32, bfloat16, float16 (CUDA), auto (default float32).")
    parser.add_argument("--output-len", type=int, default=64)
    parser.add_argument("--concurrency", default="1,8,16", help="Comma-separated levels for short and mixed.")
    parser.add_argument("--requests-per-stream", type=int, default=2,
                        help="Closed loop: each level runs max(4, this x c) requests.")
    parser.add_argument("--repeats", type=int, default=2, help="Runs per fixed-batch reference (median).")
    parser.add_argument("--rate", type=float, default=1.5, help="poisson: requests per second.")
    parser.add_argument("--poisson-requests", type=int, default=48)
    parser.add_argument("--num-requests", type=int, default=32, help="structured: requests per run.")
    parser.add_argument("--skip-references", action="store_true", help="Only measure the server.")
    parser.add_argument("--packed-references", action="store_true",
                        help="Run the in-process references over the same oneDNN-packed linear weights the "
                             "server uses on CPU (default: the model as transformers loads it).")
    parser.add_argument("--quick", action="store_true", help="c = 1 and 8, fewer requests, one repeat.")
    parser.add_argument("--json", type=Path, help="Also write every figure to this file.")
    parser.add_argument("--server-log", type=Path, help="Keep the started server's log here.")
    parser.add_argument("--dry-run", action="store_true",
                        help="Check the arguments, print the plan and exit: start, load and measure nothing.")
    parser.add_argument("workload", nargs="?", default="throughput", choices=["throughput", "structured"],
                        help="throughput (default): the --workloads; structured: JSON-schema-constrained "
                             "requests against unconstrained ones, compile times, isolation (bench/serving_structured.py).")
    args = parser.parse_args(argv)
    if args.workload == "structured":
        from bench.serving_structured import run as run_structured

        return run_structured(args)
    plan = Plan(levels=[int(c) for c in args.concurrency.split(",")], output_len=args.output_len,
                requests_per_stream=args.requests_per_stream, repeats=args.repeats, rate=args.rate,
                poisson_requests=args.poisson_requests, shared_requests=12)
    if args.quick:
        plan = Plan(levels=[1, 8], output_len=min(args.output_len, 32), requests_per_stream=1, repeats=1,
                    rate=args.rate, poisson_requests=12, shared_requests=6, quality_prompts=4)
    chosen = [w.strip() for w in args.workloads.split(",") if w.strip()]
    unknown = sorted(set(chosen) - set(WORKLOADS))
    if unknown:
        parser.error(f"unknown workloads {unknown}; choose from {', '.join(WORKLOADS)}")
    if args.base_url and "shared-prefix" in chosen:
        parser.error("shared-prefix starts a second server (prefix reuse off); leave it out with --base-url")
    if args.dtype not in DTYPES:
        parser.error(f"unknown --dtype {args.dtype!r}; choose from {', '.join(DTYPES)}")
    if args.dry_run:
        print(f"would run {', '.join(chosen)} on {args.model}, {args.threads} threads, {args.dtype}: {plan}")
        return 0

    host = machine()
    header = f"# serving: {args.model}, workloads {', '.join(chosen)}; {args.threads} threads, {args.dtype}; {host}"
    print(header, flush=True)
    texts = Texts()
    refs = None
    if not args.skip_references and {"short", "mixed"} & set(chosen):
        refs = References(args.dtype, args.threads, plan.output_len, plan.repeats, args.packed_references)
    figures: dict[str, Any] = {}
    started = time.perf_counter()
    quality: dict[str, Any] | None = None
    try:
        if refs is not None:
            figures["floor"] = refs.floor(args.threads)
            figures["floor"]["context"] = (statistics.mean(len(r) for r in refs.encode(prompts(8)))
                                           + plan.output_len // 2)
            figures["llama_cpp"] = refs.llama_cpp(prompts(1)[0], plan.output_len, args.threads)
            quality = {"texts": prompts(plan.quality_prompts), **refs.greedy(prompts(plan.quality_prompts),
                                                                            plan.output_len)}
            _progress(f"floor: {figures['floor']['read_gbps']:.1f} GB/s, "
                      f"{figures['floor']['matmul_gflops']:.0f} GFLOP/s; llama.cpp: {figures['llama_cpp']}")
        with server(args.model, args.threads, args.base_url, _server_env(args), args.server_log) as url:
            if quality is not None and refs is not None:
                figures["quality"] = quality_check(url, args, plan, quality, refs)
            for name in chosen:
                if name in ("short", "mixed"):
                    figures[name] = closed_workload(name, url, args, plan, texts, refs)
                elif name == "long-prompt":
                    figures[name] = long_prompt_workload(url, args, plan, texts)
                elif name == "shared-prefix":
                    figures[name] = shared_prefix_workload(url, args, plan, texts)
                else:
                    figures[name] = poisson_workload(url, args, plan, texts)
    finally:
        if refs is not None:
            refs.close()

    print(report(figures))
    if "floor" in figures:
        print("\n" + floor_report(figures, args.dtype))
    print(f"\n(wall time {time.perf_counter() - started:.0f} s; load average now "
          f"{', '.join(f'{x:.2f}' for x in os.getloadavg())})")
    if args.json:
        args.json.write_text(json.dumps({"header": header, "machine": host, "args": {k: str(v) for k, v in vars(args).items()},
                                         "plan": asdict(plan), "workloads": figures}, indent=1))
    failures = sum(e["failures"] for n in ("short", "mixed") if n in figures for e in figures[n]["levels"])
    failures += sum(int(figures[n]["failures"]) for n in ("long-prompt", "poisson", "quality") if n in figures)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
