"""Soak: many concurrent streaming clients plus a stream of embedding calls, for a fixed time.

It checks the promises of bounded overload over minutes rather than seconds: every request
either completes or is refused by design (429 when a queue is full, 503 while loading or
draining), none fails otherwise, and the server's memory stays flat. Clients use the async
SDK with its own retries off, so each refusal is counted; a refused client waits the
`Retry-After` it was given and tries again, as the SDK would.

The server (started here unless `--base-url` is given) runs with a small generation queue
(`--max-queued`, default 16) so that 64 streaming clients really overflow it. Its resident
memory (psutil, including child processes) is sampled every second. Beside the load, the
probes of `bench/probes.py` play hostile and careless clients (huge bodies, requests that can
never fit, invented methods, cross-site requests, half-sent requests, abandoned calls) and
count every answer that is not the promised one (`--no-probes` to leave them out; they need
the keyless server launched here).

    python -m bench.soak                               # 64 streams + 4 embedding clients, 120 s
    python -m bench.soak --duration 30 --streams 16    # a quick look
    python -m bench.soak --base-url http://host:8000/v1 --api-key KEY --pid 1234   # no probes
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from bench import probes
from bench._common import EMBEDDER, GENERATOR, machine, percentile, prompts, sentences, table
from maas_sdk import APIStatusError, AsyncMaaS, MaaSError

REFUSED_STATUSES = (429, 503)
PROBE_TIMEOUT = 2.0  # header and body timeouts of the launched server, for the slow-client probes
MAX_RUNNING = 16


@dataclass
class Tally:
    """What one kind of client saw."""

    completed: int = 0
    refused: int = 0
    failed: int = 0
    tokens: int = 0
    latencies: list[float] = field(default_factory=list)
    first_token: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def fail(self, exc: BaseException) -> None:
        self.failed += 1
        if len(self.errors) < 5:
            self.errors.append(f"{type(exc).__name__}: {exc}")


def refusal_delay(exc: MaaSError) -> float | None:
    """Seconds to wait when `exc` is an answer refused by design (HTTP 429/503), else None.
    An error event inside a stream that had started is a failure, whatever its type."""
    if not isinstance(exc, APIStatusError) or exc.response.status_code not in REFUSED_STATUSES:
        return None
    header = exc.response.headers.get("retry-after", "1")
    return float(header) if header.isdigit() else 1.0


async def stream_client(client: AsyncMaaS, prompt: str, max_tokens: int, until: float, tally: Tally) -> None:
    while time.monotonic() < until:
        started = time.monotonic()
        first: float | None = None
        tokens = 0
        try:
            stream = await client.generate(prompt, model=GENERATOR, max_tokens=max_tokens, min_tokens=max_tokens,
                                           temperature=0, stream=True, stream_options={"include_usage": True})
            async with stream:
                async for chunk in stream:
                    if chunk.text and first is None:
                        first = time.monotonic() - started
                    if chunk.usage is not None:
                        tokens = chunk.usage.completion_tokens
        except MaaSError as exc:
            delay = refusal_delay(exc)
            if delay is None:
                tally.fail(exc)
                await asyncio.sleep(1)
                continue
            tally.refused += 1
            await asyncio.sleep(delay)
            continue
        if tokens != max_tokens:
            tally.fail(RuntimeError(f"stream ended after {tokens} of {max_tokens} tokens"))
            continue
        tally.completed += 1
        tally.tokens += tokens
        tally.latencies.append(time.monotonic() - started)
        if first is not None:
            tally.first_token.append(first)


async def embed_client(client: AsyncMaaS, texts: list[str], until: float, tally: Tally) -> None:
    i = 0
    while time.monotonic() < until:
        batch = [texts[(i + k) % len(texts)] for k in range(8)]
        i += 8
        started = time.monotonic()
        try:
            result = await client.embed(batch, model=EMBEDDER)
        except MaaSError as exc:
            delay = refusal_delay(exc)
            if delay is None:
                tally.fail(exc)
                await asyncio.sleep(1)
            else:
                tally.refused += 1
                await asyncio.sleep(delay)
            continue
        if len(result.data) != len(batch):
            tally.fail(RuntimeError(f"{len(result.data)} vectors for {len(batch)} inputs"))
            continue
        tally.completed += 1
        tally.latencies.append(time.monotonic() - started)


def rss(pid: int) -> int:
    """Resident bytes of the process and its children (a training worker would count)."""
    process = psutil.Process(pid)
    total = process.memory_info().rss
    for child in process.children(recursive=True):
        with contextlib.suppress(psutil.NoSuchProcess):
            total += child.memory_info().rss
    return total


async def sample_rss(pid: int | None, until: float, samples: list[tuple[float, int]]) -> None:
    start = time.monotonic()
    while pid is not None and time.monotonic() < until:
        with contextlib.suppress(psutil.NoSuchProcess):
            samples.append((time.monotonic() - start, rss(pid)))
        await asyncio.sleep(1.0)


async def soak(base_url: str, api_key: str | None, pid: int | None, args: argparse.Namespace) -> int:
    texts = prompts(args.streams)
    sentences_ = sentences()
    streams, embeds = Tally(), Tally()
    samples: list[tuple[float, int]] = []
    where = machine()
    async with AsyncMaaS(api_key=api_key or "none", base_url=base_url, max_retries=0, timeout=600) as client:
        # Warm-up: one of each, so the first measurements are not model start-up.
        await client.generate("Hello", model=GENERATOR, max_tokens=4)
        await client.embed(["Hello"], model=EMBEDDER)
        baseline = rss(pid) if pid is not None else None
        started = time.monotonic()
        until = started + args.duration
        capacity = MAX_RUNNING + args.max_queued
        probing = probes.run_probes(base_url, until, capacity, PROBE_TIMEOUT, PROBE_TIMEOUT) if args.probes else None
        results = await asyncio.gather(
            sample_rss(pid, until, samples),
            *(stream_client(client, texts[i], args.max_tokens, until, streams) for i in range(args.streams)),
            *(embed_client(client, sentences_, until, embeds) for _ in range(args.embed_clients)),
            *([probing] if probing is not None else []),
        )
        probed: list[probes.Probe] = results[-1] if probing is not None else []
        wall = time.monotonic() - started
    print(f"# soak: {args.streams} streaming clients ({args.max_tokens} tokens each) + {args.embed_clients} "
          f"embedding clients (8 inputs per call), {wall:.0f} s")
    print(f"# {where}")
    rows = []
    for name, tally in (("stream", streams), ("embed", embeds)):
        rows.append([name, tally.completed, tally.refused, tally.failed, tally.completed / wall,
                     percentile(tally.first_token, 50), percentile(tally.latencies, 50),
                     percentile(tally.latencies, 99)])
    print(table(["calls", "completed", "refused (429/503)", "failed", "completed/s", "TTFT p50 s",
                 "latency p50 s", "latency p99 s"], rows))
    print(f"\noutput tokens/s: {streams.tokens / wall:.1f}")
    if samples and baseline is not None:
        mib = 1024 * 1024
        quarter = [samples[min(len(samples) - 1, int(len(samples) * q))][1] for q in (0.25, 0.5, 0.75)]
        print()
        print(table(["server RSS MiB", "after warm-up", "at 25%", "at 50%", "at 75%", "at end", "peak"],
                    [["", baseline / mib, *(q / mib for q in quarter), samples[-1][1] / mib,
                      max(s for _, s in samples) / mib]]))
    if probed:
        print()
        print(table(probes.HEADERS, [probe.row() for probe in probed]))
        over = sum(s > 0.1 for s in probed[0].seconds)
        print(f"\n/health over 100 ms: {over} of {probed[0].runs}")
    for tally in (streams, embeds):
        for error in tally.errors:
            print(f"error: {error}", file=sys.stderr)
    for probe in probed:
        for note in probe.notes:
            print(f"probe {probe.name}: {note}", file=sys.stderr)
    return 1 if streams.failed or embeds.failed or any(p.broken for p in probed) else 0


@contextlib.contextmanager
def launched(args: argparse.Namespace) -> Iterator[tuple[str, int]]:
    from reference_server.testing import ServerProcess

    with tempfile.TemporaryDirectory(prefix="maas-soak-") as tmp:
        env = {"MAAS_ENABLED_MODELS": f"{GENERATOR},{EMBEDDER}", "MAAS_THREADS": str(args.threads),
               "MAAS_DATA_DIR": tmp, "MAAS_LOG_LEVEL": "warning", "MAAS_API_KEYS": "",
               "MAAS_MAX_QUEUED": str(args.max_queued), "MAAS_MAX_RUNNING": str(MAX_RUNNING),
               "MAAS_HEADER_TIMEOUT": str(PROBE_TIMEOUT), "MAAS_BODY_TIMEOUT": str(PROBE_TIMEOUT)}
        with ServerProcess(env=env, log_path=Path(tmp) / "server.log") as proc:
            assert proc.process is not None
            yield proc.base_url, proc.process.pid


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=120.0, help="seconds of load (default 120)")
    parser.add_argument("--streams", type=int, default=64, help="concurrent streaming clients")
    parser.add_argument("--embed-clients", type=int, default=4, help="concurrent embedding clients")
    parser.add_argument("--max-tokens", type=int, default=32, help="tokens per streamed completion")
    parser.add_argument("--max-queued", type=int, default=16, help="MAAS_MAX_QUEUED of the launched server")
    parser.add_argument("--threads", type=int, default=2, help="MAAS_THREADS of the launched server")
    parser.add_argument("--no-probes", dest="probes", action="store_false",
                        help="leave out the hostile-client probes (bench/probes.py)")
    parser.add_argument("--base-url", default=None, help="use a running server instead of starting one")
    parser.add_argument("--api-key", default=None)
    parser.add_argument("--pid", type=int, default=None, help="the running server's pid, to sample its memory")
    args = parser.parse_args(argv)
    if args.base_url is not None:
        args.probes = False  # they expect the keyless server with short timeouts launched below
        return asyncio.run(soak(args.base_url, args.api_key, args.pid, args))
    with launched(args) as (base_url, pid):
        return asyncio.run(soak(base_url, None, pid, args))


if __name__ == "__main__":
    sys.exit(main())
