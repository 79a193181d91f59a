"""What the SDK costs on the client side, against raw httpx (and the `openai` client if installed).

A minimal raw-ASGI app (no framework) serves, over real loopback HTTP from a child
process, one fixed completion JSON body and one fixed stream of N SSE events shaped
like `GenerationChunk` ending with `data: [DONE]`. The stream is pre-encoded and
written in blocks of `--write-size` bytes, so the server costs next to nothing and
the numbers measure the clients. Each client runs `--repeat` rounds, interleaved,
and the table shows medians:

- not streamed: ms per request (raw: `httpx.Client.post` + `json.loads`);
- streamed: events per second (raw: `iter_lines` + `json.loads` per event; the SDK:
  typed `GenerationChunk`s from `generate(stream=True)`).

Targets: the SDK's request <= 1.15x raw httpx; >= 50,000 typed events/s.
Run: `python bench/sdk.py` (see `--help`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import socket
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from maas_sdk import MaaS

MODEL = "bench-model"
PROMPT = "Write one sentence about the sea."
COMPLETION = {
    "id": "cmpl-bench",
    "object": "text_completion",
    "created": 1732800000,
    "model": MODEL,
    "choices": [{
        "index": 0,
        "text": " The sea keeps its own time, folding light into the long blue hours of the afternoon.",
        "finish_reason": "stop",
        "logprobs": None,
    }],
    "usage": {"prompt_tokens": 8, "completion_tokens": 19, "total_tokens": 27},
}
# Like the SDK's own pool: without it, httpx's separate header and body writes can wait for a delayed ACK.
NODELAY = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]
STREAM_TARGET = 50_000.0
REQUEST_TARGET = 1.15


def sse_body(events: int) -> bytes:
    """`events` chunks (the last with finish_reason "stop"), then `data: [DONE]`."""
    parts = []
    for i in range(events):
        chunk = {
            "id": "cmpl-bench",
            "object": "text_completion",
            "created": 1732800000,
            "model": MODEL,
            "choices": [{"index": 0, "text": f" tok{i}", "finish_reason": "stop" if i == events - 1 else None}],
        }
        parts.append(b"data: " + json.dumps(chunk, separators=(",", ":")).encode() + b"\n\n")
    parts.append(b"data: [DONE]\n\n")
    return b"".join(parts)


def make_app(events: int, write_size: int) -> Callable[..., Any]:
    completion = json.dumps(COMPLETION, separators=(",", ":")).encode()
    stream = sse_body(events)
    blocks = [stream[i : i + write_size] for i in range(0, len(stream), write_size)]
    json_headers = [(b"content-type", b"application/json"), (b"x-request-id", b"req-bench")]
    sse_headers = [(b"content-type", b"text/event-stream"), (b"x-request-id", b"req-bench")]

    async def app(scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        if not json.loads(body or b"{}").get("stream"):
            await send({"type": "http.response.start", "status": 200, "headers": json_headers})
            await send({"type": "http.response.body", "body": completion})
            return
        await send({"type": "http.response.start", "status": 200, "headers": sse_headers})
        for block in blocks:
            await send({"type": "http.response.body", "body": block, "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    return app


def serve(events: int, write_size: int, ready: Any) -> None:
    import uvicorn

    # IPPROTO_TCP explicitly: asyncio only sets TCP_NODELAY on sockets that say so, and without
    # it each response would wait ~40 ms for a delayed ACK between its header and body writes.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    ready.send(sock.getsockname()[1])
    config = uvicorn.Config(make_app(events, write_size), log_level="warning", access_log=False, lifespan="off")
    uvicorn.Server(config).run(sockets=[sock])


def start_server(events: int, write_size: int) -> tuple[multiprocessing.process.BaseProcess, str]:
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    process = context.Process(target=serve, args=(events, write_size, child), daemon=True)
    process.start()
    port = parent.recv()
    base_url = f"http://127.0.0.1:{port}/v1"
    for _ in range(200):
        try:
            httpx.post(f"{base_url}/completions", json={}, timeout=1).raise_for_status()
            return process, base_url
        except httpx.TransportError:
            time.sleep(0.05)
    raise RuntimeError("the benchmark server did not start")


# Each runner does one round and returns its cost: seconds per request, or seconds per event.
Runner = Callable[[], float]


@dataclass
class Contender:
    requests: Runner
    stream: Runner
    close: Callable[[], object]


def raw_httpx(base_url: str, requests: int) -> Contender:
    http = httpx.Client(timeout=60, transport=httpx.HTTPTransport(socket_options=NODELAY))
    url = f"{base_url}/completions"
    payload = {"model": MODEL, "prompt": PROMPT, "max_tokens": 32}

    def requests_round() -> float:
        start = time.perf_counter()
        for _ in range(requests):
            response = http.post(url, json=payload)
            response.raise_for_status()
            json.loads(response.content)
        return (time.perf_counter() - start) / requests

    def stream_round() -> float:
        start = time.perf_counter()
        count = 0
        with http.stream("POST", url, json={**payload, "stream": True}) as response:
            for line in response.iter_lines():
                if line.startswith("data: ") and line != "data: [DONE]":
                    json.loads(line[6:])
                    count += 1
        return (time.perf_counter() - start) / count

    return Contender(requests_round, stream_round, http.close)


def maas_sync(base_url: str, requests: int) -> Contender:
    client = MaaS(base_url=base_url, api_key="sk-bench", timeout=60)

    def requests_round() -> float:
        start = time.perf_counter()
        for _ in range(requests):
            client.generate(PROMPT, model=MODEL, max_tokens=32)
        return (time.perf_counter() - start) / requests

    def stream_round() -> float:
        start = time.perf_counter()
        count = 0
        with client.generate(PROMPT, model=MODEL, max_tokens=32, stream=True) as stream:
            for _chunk in stream:
                count += 1
        return (time.perf_counter() - start) / count

    return Contender(requests_round, stream_round, client.close)


def maas_async(base_url: str, requests: int) -> Contender:
    from maas_sdk import AsyncMaaS

    loop = asyncio.new_event_loop()
    client = AsyncMaaS(base_url=base_url, api_key="sk-bench", timeout=60)

    async def requests_round() -> float:
        start = time.perf_counter()
        for _ in range(requests):
            await client.generate(PROMPT, model=MODEL, max_tokens=32)
        return (time.perf_counter() - start) / requests

    async def stream_round() -> float:
        start = time.perf_counter()
        count = 0
        async with await client.generate(PROMPT, model=MODEL, max_tokens=32, stream=True) as stream:
            async for _chunk in stream:
                count += 1
        return (time.perf_counter() - start) / count

    def close() -> None:
        loop.run_until_complete(client.close())
        loop.close()

    return Contender(lambda: loop.run_until_complete(requests_round()),
                     lambda: loop.run_until_complete(stream_round()), close)


def openai_client(base_url: str, requests: int) -> Contender | None:
    try:
        import openai
    except ImportError:
        return None
    http = httpx.Client(timeout=60, transport=httpx.HTTPTransport(socket_options=NODELAY))
    client = openai.OpenAI(base_url=base_url, api_key="sk-bench", timeout=60, http_client=http)

    def requests_round() -> float:
        start = time.perf_counter()
        for _ in range(requests):
            client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=32)
        return (time.perf_counter() - start) / requests

    def stream_round() -> float:
        start = time.perf_counter()
        count = 0
        for _chunk in client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=32, stream=True):
            count += 1
        return (time.perf_counter() - start) / count

    return Contender(requests_round, stream_round, client.close)


def measure(runners: dict[str, Runner], repeat: int) -> dict[str, float]:
    """Median cost of each runner over `repeat` rounds, interleaved so that load spikes hit them alike."""
    for runner in runners.values():
        runner()  # warm-up: connections, imports, caches
    rounds: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(repeat):
        for name, runner in runners.items():
            rounds[name].append(runner())
    return {name: statistics.median(costs) for name, costs in rounds.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=1000, help="requests per round, not streamed (1000)")
    parser.add_argument("--events", type=int, default=10_000, help="events in the streamed answer (10000)")
    parser.add_argument("--repeat", type=int, default=7, help="rounds per client; the median is shown (7)")
    parser.add_argument("--write-size", type=int, default=16_384,
                        help="bytes per server write of the stream (16384); 1 event per write: about 110")
    parser.add_argument("--async", dest="include_async", action="store_true", help="also measure AsyncMaaS")
    args = parser.parse_args()

    process, base_url = start_server(args.events, args.write_size)
    try:
        clients = {"raw httpx + json": raw_httpx(base_url, args.requests),
                   "maas-sdk MaaS": maas_sync(base_url, args.requests)}
        if args.include_async:
            clients["maas-sdk AsyncMaaS"] = maas_async(base_url, args.requests)
        official = openai_client(base_url, args.requests)
        if official is not None:
            clients["openai"] = official
        per_request = measure({name: client.requests for name, client in clients.items()}, args.repeat)
        per_event = measure({name: client.stream for name, client in clients.items()}, args.repeat)
        for client in clients.values():
            client.close()
    finally:
        process.terminate()
        process.join()

    raw = "raw httpx + json"
    print(f"\n{args.requests} requests x {args.repeat} rounds; stream of {args.events} events "
          f"x {args.repeat} rounds; medians; loopback HTTP/1.1 (uvicorn, h11)\n")
    print(f"{'client':<20} {'ms/request':>11} {'vs raw':>7} {'events/s':>10} {'vs raw':>7}")
    print("-" * 59)
    for name in clients:
        request_ratio = per_request[name] / per_request[raw]
        event_ratio = per_event[name] / per_event[raw]
        print(f"{name:<20} {per_request[name] * 1000:>11.3f} {request_ratio:>6.2f}x "
              f"{1 / per_event[name]:>10,.0f} {event_ratio:>6.2f}x")
    if official is None:
        print(f"{'openai':<20} {'(not installed: pip install openai to compare)':>38}")
    sdk = "maas-sdk MaaS"
    request_ok = per_request[sdk] / per_request[raw] <= REQUEST_TARGET
    stream_ok = 1 / per_event[sdk] >= STREAM_TARGET
    print("\n'vs raw' is cost relative to raw httpx (time per request or per event; lower is better).")
    print(f"targets: MaaS request <= {REQUEST_TARGET}x raw: {'met' if request_ok else 'MISSED'}; "
          f"stream >= {STREAM_TARGET:,.0f} typed events/s: {'met' if stream_ok else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
