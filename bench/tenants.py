"""Many tenants on one base model: memory, throughput and cold start of fine-tuned LoRA adapters
served in the base generator's shared batch.

Real jobs are too slow to make a hundred fine-tuned models, so the benchmark writes random
rank-8 PEFT adapters (one made by PEFT on the real base model, the others the same files with
other random weights) on the modules PEFT targets by default, as the server's LoRA jobs train
them (`q_proj` and `v_proj` here; `--targets all` for every projection), and registers each as the succeeded LoRA job of its own API key through
the store, exactly as a finished job leaves it. Then:

- memory: the resident memory (VmRSS) of one server process with the base model only, after
  as many requests to the base model as follow to the adapters (its KV and prefix caches and
  oneDNN's kernels for the base model's shapes are then counted on both sides); after the N
  adapters are registered in its store, which it reads as a cluster's replicas do (every
  MAAS_MODEL_SYNC_SECONDS, with MAAS_FINE_TUNING_SUPERVISOR=false); and after one request to
  each. Target: the N add at most MAAS_MAX_LORAS x adapter size + 64 MiB.
- throughput: 8 greedy clients in a closed loop, 64 output tokens each (`ignore_eos`), on the
  base model; spread over 8 adapters; spread over 64 adapters with MAAS_MAX_LORAS=16, so
  adapters are loaded and evicted during the run. Targets: 0.8x and 0.6x the base model's
  output tokens per second, no failed request.
- cold start: TTFT p50 of the first request to an adapter that is not resident minus that of
  the next request to the same adapter (resident by then), one client at a time. Target: 50 ms.

- classifiers: 8 random fine-tuned classifiers of the default encoder (a rank-8 LoRA adapter on
  the modules a classifier job trains plus a random pooler and head, written by PEFT like a
  job's), each registered as the succeeded classifier job of its own key. 8 clients in a closed
  loop send 8 texts per request: classifications spread over the 8 classifiers, against
  embeddings of the same texts on the base encoder (the same batcher); the ratio of inputs per
  second, and the resident memory of one server with the encoder only (after embeddings of as
  many requests) and with the 8 classifiers registered after a request to each, against their
  adapters' and heads' size.

Why one process: the base model's figure used to come from a server of its own, started on an
empty store. Two processes that load the same model and serve the same requests differed by up
to 80 MiB of resident memory from one run to the next (heap layout, threads' glibc arenas), as
much as the whole budget; within one process the figure measures what the adapters add and
nothing else. (The registry entries the N models add at registration are in the figure too:
registering keeps a record per model, its weights are read when a request needs them.)

    python -m bench.tenants            # N = 100, a few minutes
    python -m bench.tenants --quick    # N = 12, to check the benchmark runs
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import httpx

from bench._common import EMBEDDER, GENERATOR, machine, prompts, sentences, summary, table

ADAPTER_RANK = 8
MAX_LORAS = 16
CLIENTS = 8
OUTPUT_TOKENS = 64
CLASSIFIERS = 8
TEXTS_PER_REQUEST = 8


def key(i: int) -> str:
    return f"sk-tenant-{i:04d}"


def write_adapters(folder: Path, n: int, threads: int, every_projection: bool) -> tuple[list[Path], int]:
    """`n` random rank-8 adapter folders of the default generator; returns them and one's bytes."""
    import torch
    from safetensors.torch import load_file, save_file

    from reference_server.inference.loading import configure_threads, default_specs, load_model
    from reference_server.settings import Settings
    from reference_server.training.random_adapters import DEFAULT_TARGETS, write_random_adapter

    warnings.filterwarnings("ignore")
    configure_threads(threads)
    spec = next(s for s in default_specs() if s.id == GENERATOR)
    spec.dtype = "float32"
    base = load_model(spec, cache_dir=Settings().cache_dir, device="cpu")
    template = write_random_adapter(base.model, folder / "a000", seed=0, rank=ADAPTER_RANK,
                                    targets=DEFAULT_TARGETS if every_projection else None)
    del base
    weights = load_file(str(template / "adapter_model.safetensors"))
    folders = [template]
    for i in range(1, n):
        target = folder / f"a{i:03d}"
        target.mkdir()
        (target / "adapter_config.json").write_bytes((template / "adapter_config.json").read_bytes())
        generator = torch.Generator().manual_seed(i)
        save_file({k: torch.randn(v.shape, generator=generator) * 0.05 for k, v in weights.items()},
                  str(target / "adapter_model.safetensors"))
        folders.append(target)
    return folders, sum(v.numel() * 4 for v in weights.values())


def write_classifiers(folder: Path, n: int, threads: int) -> tuple[list[Path], int]:
    """`n` random fine-tuned classifiers of the default encoder; returns them and one's bytes."""
    from reference_server.inference.loading import configure_threads, default_specs
    from reference_server.inference.loading.sources import resolve_source
    from reference_server.training.random_adapters import write_random_classifier

    warnings.filterwarnings("ignore")
    configure_threads(threads)
    base, _ = resolve_source(next(s for s in default_specs() if s.id == EMBEDDER))
    folders = [write_random_classifier(base, folder / f"c{i:03d}", ("negative", "positive"), seed=i,
                                       rank=ADAPTER_RANK) for i in range(n)]
    return folders, (folders[0] / "adapter_model.safetensors").stat().st_size


def register(data_dir: Path, folders: list[Path], base: str = GENERATOR,
             labels: tuple[str, ...] | None = None) -> list[str]:
    """Each adapter as the fine-tuned model of its own key (classifiers: with their `labels`);
    returns the model ids."""
    from reference_server.http.middleware.auth import key_id
    from reference_server.storage import DataLayout, Store
    from reference_server.training.random_adapters import register_adapter

    layout = DataLayout(data_dir)
    layout.create()
    store = Store(layout.db_path)
    return [register_adapter(store, layout, f, owner=key_id(key(i)), base=base, base_path="", suffix=f"t{i}",
                             labels=labels)
            for i, f in enumerate(folders)]


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def start(data_dir: Path, n_keys: int, threads: int, log: Path, max_loras: int, model: str = GENERATOR) -> Any:
    """A server of `model` on `data_dir` that serves the fine-tuned models registered in its store
    later, at its next sync (as a replica that does not supervise jobs)."""
    from reference_server.testing import ServerProcess

    env = {"MAAS_ENABLED_MODELS": model, "MAAS_THREADS": str(threads), "MAAS_DATA_DIR": str(data_dir),
           "MAAS_LOG_LEVEL": "warning", "MAAS_DTYPE": os.environ.get("MAAS_DTYPE", "auto"),
           "MAAS_API_KEYS": ",".join(key(i) for i in range(n_keys)), "MAAS_MAX_LORAS": str(max_loras),
           "MAAS_ACCESS_LOG": "false", "MAAS_FINE_TUNING_SUPERVISOR": "false", "MAAS_MODEL_SYNC_SECONDS": "1"}
    return ServerProcess(env=env, log_path=log).start()


def wait_served(url: str, models: list[str], timeout: float = 300) -> None:
    """Wait until the server serves each of `models` (the i-th the fine-tuned model of key i)."""
    deadline = time.monotonic() + timeout
    with httpx.Client(base_url=url, timeout=60) as client:
        for i, model in enumerate(models):
            while client.get(f"/models/{model}", headers={"authorization": f"Bearer {key(i)}"}).status_code != 200:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{model} was not served within {timeout:.0f} s of its registration")
                time.sleep(0.5)


async def completion(client: httpx.AsyncClient, i_key: int, model: str, prompt: str,
                     max_tokens: int) -> tuple[int, float | None]:
    """(completion tokens, time to first token) of one streamed greedy completion."""
    body = {"model": model, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0, "ignore_eos": True,
            "stream": True, "stream_options": {"include_usage": True}}
    start = time.perf_counter()
    first: float | None = None
    tokens = 0
    async with client.stream("POST", "/completions", json=body,
                             headers={"authorization": f"Bearer {key(i_key)}"}) as reply:
        if reply.status_code != 200:
            raise RuntimeError(f"{reply.status_code}: {(await reply.aread())[:200]!r}")
        async for line in reply.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if chunk.get("choices") and first is None:
                first = time.perf_counter() - start
            if chunk.get("usage"):
                tokens = int(chunk["usage"]["completion_tokens"])
    return tokens, first


async def throughput(url: str, targets: list[tuple[int, str]], requests: int) -> dict[str, float]:
    """8 clients in a closed loop, `requests` each, cycling through `targets` (key, model)."""
    texts = prompts(CLIENTS * requests)
    failures = 0
    produced = 0

    async def one_client(c: int, client: httpx.AsyncClient) -> None:
        nonlocal failures, produced
        for r in range(requests):
            i_key, model = targets[(c + r * CLIENTS) % len(targets)]
            try:
                tokens, _ = await completion(client, i_key, model, texts[c * requests + r], OUTPUT_TOKENS)
                produced += tokens
            except Exception:  # noqa: BLE001 - counted, the run goes on
                failures += 1

    async with httpx.AsyncClient(base_url=url, timeout=600) as client:
        started = time.perf_counter()
        await asyncio.gather(*(one_client(c, client) for c in range(CLIENTS)))
        wall = time.perf_counter() - started
    return {"tok_s": produced / wall, "failures": failures}


async def cold_start(url: str, targets: list[tuple[int, str]]) -> dict[str, float]:
    """TTFT of the first request to each (non-resident) adapter and of the next one to it."""
    cold: list[float] = []
    warm: list[float] = []
    async with httpx.AsyncClient(base_url=url, timeout=600) as client:
        for i_key, model in targets:
            for into in (cold, warm):
                _, ttft = await completion(client, i_key, model, "Tell me about the sea.", 1)
                if ttft is not None:
                    into.append(ttft)
    return {"cold_p50_ms": summary(cold)["p50"] * 1000, "warm_p50_ms": summary(warm)["p50"] * 1000}


async def encoder_throughput(url: str, targets: list[tuple[int, str]], requests: int,
                             classify: bool) -> dict[str, float]:
    """8 clients in a closed loop, `requests` each of 8 texts, cycling through `targets` (key,
    model): classifications, or (`classify` False) embeddings; inputs per second."""
    texts = sentences()
    failures = 0
    done = 0

    async def one_client(c: int, client: httpx.AsyncClient) -> None:
        nonlocal failures, done
        for r in range(requests):
            i_key, model = targets[(c + r * CLIENTS) % len(targets)]
            start = (c * requests + r) * TEXTS_PER_REQUEST
            batch = [texts[(start + j) % len(texts)] for j in range(TEXTS_PER_REQUEST)]
            path, body = (("/classifications", {"model": model, "input": batch}) if classify
                          else ("/embeddings", {"model": model, "input": batch}))
            reply = await client.post(path, json=body, headers={"authorization": f"Bearer {key(i_key)}"})
            if reply.status_code == 200:
                done += len(batch)
            else:
                failures += 1

    async with httpx.AsyncClient(base_url=url, timeout=600) as client:
        started = time.perf_counter()
        await asyncio.gather(*(one_client(c, client) for c in range(CLIENTS)))
        wall = time.perf_counter() - started
    return {"inputs_s": done / wall, "failures": failures}


def classifier_figures(root: Path, threads: int, requests: int) -> dict[str, Any]:
    """Memory and throughput of 8 fine-tuned classifiers on the base encoder's batcher."""
    folders, classifier_bytes = write_classifiers(root / "classifiers", CLASSIFIERS, threads)
    server = start(root / "encoder-data", CLASSIFIERS, threads, root / "encoder.log", MAX_LORAS, EMBEDDER)
    try:
        asyncio.run(encoder_throughput(server.base_url, [(0, EMBEDDER)], 1, classify=False))
        base_rss = rss_mib(server.process.pid)
        models = register(root / "encoder-data", folders, EMBEDDER, ("negative", "positive"))
        wait_served(server.base_url, models)
        targets = list(enumerate(models))
        asyncio.run(encoder_throughput(server.base_url, targets, 1, classify=True))  # a request to each
        served_rss = rss_mib(server.process.pid)
        base = asyncio.run(encoder_throughput(server.base_url, [(0, EMBEDDER)], requests, classify=False))
        spread = asyncio.run(encoder_throughput(server.base_url, targets, requests, classify=True))
    finally:
        server.stop()
    ratio = spread["inputs_s"] / base["inputs_s"] if base["inputs_s"] else float("nan")  # nan: every base call failed
    return {"base": base, "classifiers": spread, "ratio": ratio,
            "memory_mib": {"base": base_rss, "after_requests": served_rss,
                           "classifier": classifier_bytes / 2**20}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--adapters", type=int, default=100, help="N, adapters registered (default 100).")
    parser.add_argument("--requests", type=int, default=8, help="Requests per client per run (default 8).")
    parser.add_argument("--threads", type=int, default=2, help="torch threads of the server (default 2).")
    parser.add_argument("--quick", action="store_true", help="N = 12, 2 requests per client, 8 and 12 adapters.")
    parser.add_argument("--targets", choices=("default", "all"), default="default",
                        help="Modules the adapters change: PEFT's default, as jobs train (default), or all seven.")
    parser.add_argument("--out", type=Path, help="Write the figures as JSON here too.")
    args = parser.parse_args(argv)
    if args.quick:
        args.adapters, args.requests = 12, 2
    spread = min(64, args.adapters)
    dtype = os.environ.get("MAAS_DTYPE", "auto")
    print(f"# tenants: {GENERATOR}, N = {args.adapters} rank-{ADAPTER_RANK} adapters, {CLIENTS} clients x "
          f"{args.requests} requests x {OUTPUT_TOKENS} tokens, adapters on {args.targets} modules, "
          f"MAAS_MAX_LORAS={MAX_LORAS}, {args.threads} threads, "
          f"dtype {dtype}; {machine()}", file=sys.stderr)
    results: dict[str, Any] = {"machine": machine(), "threads": args.threads, "dtype": dtype,
                               "adapters": args.adapters, "max_loras": MAX_LORAS}
    with tempfile.TemporaryDirectory(prefix="maas-tenants-") as tmp:
        root = Path(tmp)
        folders, adapter_bytes = write_adapters(root / "adapters", args.adapters, args.threads,
                                                args.targets == "all")
        server = start(root / "data", args.adapters, args.threads, root / "server.log", MAX_LORAS)
        try:  # as many requests as to the adapters below, on the base model (see the module docstring)
            asyncio.run(throughput(server.base_url, [(0, GENERATOR)] * args.adapters, -(-args.adapters // CLIENTS)))
            base_rss = rss_mib(server.process.pid)
            models = register(root / "data", folders)
            wait_served(server.base_url, models)
            registered_rss = rss_mib(server.process.pid)
            results["cold"] = asyncio.run(cold_start(server.base_url, list(enumerate(models))[:MAX_LORAS // 2]))
            asyncio.run(throughput(server.base_url, list(enumerate(models)), -(-args.adapters // CLIENTS)))  # each
            served_rss = rss_mib(server.process.pid)
            runs = {"base model": [(0, GENERATOR)], "8 adapters": list(enumerate(models))[:8],
                    f"{spread} adapters": list(enumerate(models))[:spread]}
            results["throughput"] = {name: asyncio.run(throughput(server.base_url, targets, args.requests))
                                     for name, targets in runs.items()}
        finally:
            server.stop()
        results["classifiers"] = classifier_figures(root, args.threads, args.requests)
    budget = MAX_LORAS * adapter_bytes / 2**20 + 64
    results["memory_mib"] = {"base": base_rss, "registered": registered_rss, "after_requests": served_rss,
                             "adapter": adapter_bytes / 2**20, "budget": budget}
    print(table(["memory", "RSS MiB", "added MiB"], [
        ["base model only (after as many requests to it)", base_rss, 0.0],
        [f"{args.adapters} adapters registered", registered_rss, registered_rss - base_rss],
        ["after a request to each", served_rss, served_rss - base_rss],
    ]))
    print(f"\nadapter {adapter_bytes / 2**20:.1f} MiB; target: at most {budget:.0f} MiB added "
          f"(MAAS_MAX_LORAS x adapter + 64 MiB)\n")
    base = results["throughput"]["base model"]["tok_s"]
    print(table(["clients spread over", "tok/s", "x base", "failed"],
                [[name, r["tok_s"], r["tok_s"] / base, r["failures"]] for name, r in results["throughput"].items()]))
    cold = results["cold"]
    print(f"\ncold start: TTFT p50 {cold['cold_p50_ms']:.0f} ms first request to an adapter, "
          f"{cold['warm_p50_ms']:.0f} ms resident: {cold['cold_p50_ms'] - cold['warm_p50_ms']:.0f} ms "
          "(target <= 50 ms)")
    cls = results["classifiers"]
    memory = cls["memory_mib"]
    print(f"\nclassifiers: {CLIENTS} clients x {args.requests} requests of {TEXTS_PER_REQUEST} texts on {EMBEDDER}")
    print(table(["clients on", "inputs/s", "x base", "failed"], [
        ["the base encoder (embeddings)", cls["base"]["inputs_s"], 1.0, cls["base"]["failures"]],
        [f"{CLASSIFIERS} fine-tuned classifiers", cls["classifiers"]["inputs_s"], cls["ratio"],
         cls["classifiers"]["failures"]],
    ]))
    print(f"memory: {memory['base']:.0f} MiB with the encoder only, {memory['after_requests']:.0f} MiB with "
          f"{CLASSIFIERS} classifiers served ({memory['after_requests'] - memory['base']:+.0f} MiB); one classifier "
          f"(adapter and head) is {memory['classifier']:.1f} MiB on disk")
    if args.out is not None:
        args.out.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
