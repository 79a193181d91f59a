"""Embedding throughput: many single-sentence HTTP clients against the server's dynamic
batching, compared with encoding the same sentences in-process in batches of 32.

Clients send one sentence per `POST /v1/embeddings` call, `--clients` at a time in a closed
loop (httpx, `encoding_format="base64"` as the OpenAI SDK sends by default). The server has
to gather those calls into batches itself; the in-process reference (same model, thread
count, pooling, in a child process that runs right before and right after the server's run,
never during it) is handed ready-made batches of 32, padded to their longest sentence as a
tokenizer's `padding=True` gives them. The server packs its batches without padding where the
model allows (`reference_server/inference/engine/packing.py`), so the same batches of 32
packed in-process are reported too: what the server keeps of its own forward pass.

    python -m bench.embeddings                    # 1024 calls from 16 clients
    python -m bench.embeddings --quick
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import httpx

from bench._common import EMBEDDER, child, machine, sentences, server, summary, table


def workload(n: int) -> list[str]:
    """`n` sentences from the fixed text, cycled."""
    pool = sentences()
    return [pool[i % len(pool)] for i in range(n)]


# The child process's loaded model, kept between calls.
_ref: dict[str, Any] = {}


def _load_reference(threads: int) -> None:
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
    spec = next(s for s in default_specs() if s.id == EMBEDDER)
    _ref.update(torch=torch, loaded=load_model(spec, cache_dir=settings.cache_dir,
                                               device=resolve_device(settings.device)))


def in_process(texts: list[str], batch_size: int, packed: bool = False) -> float:
    """Sentences/s encoding `texts` in batches of `batch_size` (mean pooling, L2-normalised,
    as the server does), padded, or `packed` into one row per batch as the server packs."""
    import torch.nn.functional as F

    from reference_server.inference.engine import packing

    torch, loaded = _ref["torch"], _ref["loaded"]
    if packed and not packing.packs_like_padding(loaded.model, loaded.tokenizer, 0, torch.device(loaded.device)):
        return math.nan

    def encode(batch: list[str]) -> None:
        if packed:
            rows = loaded.tokenizer(batch, add_special_tokens=True)["input_ids"]
            hidden = loaded.model(**packing.packed_inputs(rows, torch.device(loaded.device))).last_hidden_state
            pooled = packing.mean_pool_packed(hidden, [len(r) for r in rows])
        else:
            enc = loaded.tokenizer(batch, padding=True, return_tensors="pt").to(loaded.device)
            pooled = packing.mean_pool_padded(loaded.model(**enc).last_hidden_state, enc["attention_mask"])
        F.normalize(pooled.float(), p=2, dim=-1).cpu().tolist()

    with torch.inference_mode():
        encode(texts[:batch_size])  # warm-up
        start = time.perf_counter()
        for i in range(0, len(texts), batch_size):
            encode(texts[i : i + batch_size])
        return len(texts) / (time.perf_counter() - start)


async def over_http(base_url: str, api_key: str | None, texts: list[str], clients: int) -> dict[str, float]:
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    limits = httpx.Limits(max_connections=clients + 2, max_keepalive_connections=clients + 2)
    latencies: list[float] = []
    failures = 0

    async with httpx.AsyncClient(base_url=base_url, headers=headers, limits=limits, timeout=120) as http:

        async def call(text: str) -> None:
            nonlocal failures
            start = time.perf_counter()
            try:
                response = await http.post("/embeddings", json={"model": EMBEDDER, "input": text,
                                                                "encoding_format": "base64"})
                ok = response.status_code == 200 and len(response.json()["data"]) == 1
            except httpx.HTTPError:
                ok = False
            if ok:
                latencies.append(time.perf_counter() - start)
            else:
                failures += 1

        async def client(queue: list[str]) -> None:
            while queue:
                await call(queue.pop())

        warm_up = texts[: clients * 2]
        await asyncio.gather(*(client(warm_up) for _ in range(clients)))
        latencies.clear()
        queue = list(reversed(texts))
        start = time.perf_counter()
        await asyncio.gather(*(client(queue) for _ in range(clients)))
        wall = time.perf_counter() - start
    lat = summary(latencies)
    return {"rate": len(latencies) / wall, "p50": lat["p50"], "p99": lat["p99"], "failures": failures}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", help="Benchmark this running server (…/v1) instead of starting one.")
    parser.add_argument("--api-key", help="Bearer key for --base-url.")
    parser.add_argument("--threads", type=int, default=2, help="torch threads, server and reference (default 2).")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--num-requests", type=int, default=1024)
    parser.add_argument("--batch-size", type=int, default=32, help="Batch size of the in-process reference.")
    parser.add_argument("--skip-reference", action="store_true")
    parser.add_argument("--quick", action="store_true", help="256 calls.")
    parser.add_argument("--server-log", type=Path)
    args = parser.parse_args(argv)
    if args.quick:
        args.num_requests = 256
    texts = workload(args.num_requests)

    print(f"# embeddings: {EMBEDDER}, {args.num_requests} single-sentence calls from {args.clients} clients, "
          f"{args.threads} threads; {machine()}", file=sys.stderr)
    # The reference runs right before and right after the server's run (the server idle, the
    # child idle in between), and the two are averaged, so drift in machine speed cancels.
    reference = packed = math.nan
    pool = None if args.skip_reference else child()

    def references() -> tuple[float, float]:
        if pool is None:
            return math.nan, math.nan
        return (pool.submit(in_process, texts, args.batch_size).result(),
                pool.submit(in_process, texts, args.batch_size, True).result())

    try:
        if pool is not None:
            pool.submit(_load_reference, args.threads).result()
        with server(EMBEDDER, args.threads, args.base_url, log=args.server_log) as url:
            before = references()
            result = asyncio.run(over_http(url, args.api_key, texts, args.clients))
            after = references()
        reference, packed = (before[0] + after[0]) / 2, (before[1] + after[1]) / 2
    finally:
        if pool is not None:
            pool.shutdown()

    print(table(
        ["server sentences/s", f"in-process batch {args.batch_size} sentences/s", "ratio",
         f"in-process packed {args.batch_size} sentences/s", "ratio to packed",
         "latency p50 ms", "latency p99 ms", "failures"],
        [[result["rate"], reference, result["rate"] / reference, packed, result["rate"] / packed,
          result["p50"] * 1e3, result["p99"] * 1e3, int(result["failures"])]],
    ))
    return 1 if result["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
