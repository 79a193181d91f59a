"""What the SDK costs on the client side, against raw httpx (and the `openai` client if installed).

A minimal raw-ASGI app (no framework) serves, over real loopback HTTP from a child
process, one fixed completion JSON body and one fixed stream of N SSE events shaped
like `GenerationChunk` ending with `data: [DONE]`. The stream is pre-encoded and
written in blocks of `--write-size` bytes, so the server costs next to nothing and
the numbers measure the clients. Clients take turns request by request (so load from
other processes falls on all alike), for `--repeat` rounds; the table shows medians:

- not streamed: ms per request (raw: `httpx.Client.post` with the API key + `json.loads`);
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

from maas_sdk import AsyncMaaS, MaaS

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
RAW, RAW_ASYNC = "raw httpx + json", "raw httpx async + json"
API_KEY = "sk-bench"
AUTH = {"authorization": f"Bearer {API_KEY}"}  # every client sends its key, as it would to a real server
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


@dataclass
class Contender:
    """One client under test: a single request, and one whole stream counted in events.

    The async ones give coroutine functions; `baseline` names the row they are compared with.
    """

    request: Callable[[], Any]
    stream: Callable[[], Any]
    close: Callable[[], Any]
    baseline: str = RAW


def raw_httpx(base_url: str) -> Contender:
    http = httpx.Client(timeout=60, headers=AUTH)
    url = f"{base_url}/completions"
    payload = {"model": MODEL, "prompt": PROMPT, "max_tokens": 32}

    def request() -> None:
        response = http.post(url, json=payload)
        response.raise_for_status()
        json.loads(response.content)

    def stream() -> int:
        count = 0
        with http.stream("POST", url, json={**payload, "stream": True}) as response:
            for line in response.iter_lines():
                if line.startswith("data: ") and line != "data: [DONE]":
                    json.loads(line[6:])
                    count += 1
        return count

    return Contender(request, stream, http.close)


def maas_sync(base_url: str) -> Contender:
    client = MaaS(base_url=base_url, api_key=API_KEY, timeout=60)

    def request() -> None:
        client.generate(PROMPT, model=MODEL, max_tokens=32)

    def stream() -> int:
        with client.generate(PROMPT, model=MODEL, max_tokens=32, stream=True) as chunks:
            return sum(1 for _chunk in chunks)

    return Contender(request, stream, client.close)


def openai_client(base_url: str) -> Contender | None:
    try:
        import openai
    except ImportError:
        return None
    http = httpx.Client(timeout=60)
    client = openai.OpenAI(base_url=base_url, api_key=API_KEY, timeout=60, http_client=http)

    def request() -> None:
        client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=32)

    def stream() -> int:
        return sum(1 for _chunk in client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=32, stream=True))

    return Contender(request, stream, client.close)


def raw_httpx_async(base_url: str) -> Contender:
    http = httpx.AsyncClient(timeout=60, headers=AUTH)
    url = f"{base_url}/completions"
    payload = {"model": MODEL, "prompt": PROMPT, "max_tokens": 32}

    async def request() -> None:
        response = await http.post(url, json=payload)
        response.raise_for_status()
        json.loads(response.content)

    async def stream() -> int:
        count = 0
        async with http.stream("POST", url, json={**payload, "stream": True}) as response:
            async for line in response.aiter_lines():
                if line.startswith("data: ") and line != "data: [DONE]":
                    json.loads(line[6:])
                    count += 1
        return count

    return Contender(request, stream, http.aclose, RAW_ASYNC)


def maas_async(base_url: str) -> Contender:
    client = AsyncMaaS(base_url=base_url, api_key=API_KEY, timeout=60)

    async def request() -> None:
        await client.generate(PROMPT, model=MODEL, max_tokens=32)

    async def stream() -> int:
        count = 0
        async with await client.generate(PROMPT, model=MODEL, max_tokens=32, stream=True) as chunks:
            async for _chunk in chunks:
                count += 1
        return count

    return Contender(request, stream, client.close, RAW_ASYNC)


def request_round(clients: dict[str, Contender], requests: int) -> dict[str, float]:
    """Seconds per request of each client, taking turns request by request, so that
    load from other processes falls on all of them alike."""
    spent = dict.fromkeys(clients, 0.0)
    for _ in range(requests):
        for name, client in clients.items():
            start = time.perf_counter()
            client.request()
            spent[name] += time.perf_counter() - start
    return {name: total / requests for name, total in spent.items()}


async def async_request_round(clients: dict[str, Contender], requests: int) -> dict[str, float]:
    spent = dict.fromkeys(clients, 0.0)
    for _ in range(requests):
        for name, client in clients.items():
            start = time.perf_counter()
            await client.request()
            spent[name] += time.perf_counter() - start
    return {name: total / requests for name, total in spent.items()}


def stream_round(clients: dict[str, Contender], loop: asyncio.AbstractEventLoop) -> dict[str, float]:
    """Seconds per event of each client, reading the whole stream once each."""
    costs = {}
    for name, client in clients.items():
        start = time.perf_counter()
        result = client.stream()
        count = loop.run_until_complete(result) if asyncio.iscoroutine(result) else result
        costs[name] = (time.perf_counter() - start) / count
    return costs


def medians(rounds: list[dict[str, float]]) -> dict[str, float]:
    return {name: statistics.median(r[name] for r in rounds) for name in rounds[0]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=300, help="requests per round, not streamed (300)")
    parser.add_argument("--events", type=int, default=10_000, help="events in the streamed answer (10000)")
    parser.add_argument("--repeat", type=int, default=11, help="rounds per client; the median is shown (11)")
    parser.add_argument("--write-size", type=int, default=16_384,
                        help="bytes per server write of the stream (16384); 1 event per write: about 110")
    parser.add_argument("--async", dest="include_async", action="store_true",
                        help="also measure AsyncMaaS, against raw httpx.AsyncClient")
    args = parser.parse_args()

    process, base_url = start_server(args.events, args.write_size)
    loop = asyncio.new_event_loop()
    try:
        sync_clients = {RAW: raw_httpx(base_url), "maas-sdk MaaS": maas_sync(base_url)}
        official = openai_client(base_url)
        if official is not None:
            sync_clients["openai"] = official
        async_clients = {RAW_ASYNC: raw_httpx_async(base_url), "maas-sdk AsyncMaaS": maas_async(base_url)}
        if not args.include_async:
            async_clients = {}
        clients = {**sync_clients, **async_clients}
        request_round(sync_clients, 20)  # warm-up: connections, imports, caches
        loop.run_until_complete(async_request_round(async_clients, 20))
        stream_round(clients, loop)
        request_rounds, stream_rounds = [], []
        for _ in range(args.repeat):
            costs = request_round(sync_clients, args.requests)
            costs.update(loop.run_until_complete(async_request_round(async_clients, args.requests)))
            request_rounds.append(costs)
            stream_rounds.append(stream_round(clients, loop))
        per_request, per_event = medians(request_rounds), medians(stream_rounds)
        for client in clients.values():
            closing = client.close()
            if asyncio.iscoroutine(closing):
                loop.run_until_complete(closing)
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
        process.terminate()
        process.join()

    print(f"\n{args.requests} requests x {args.repeat} rounds; a stream of {args.events} events x {args.repeat} "
          f"rounds; medians; loopback HTTP/1.1 (uvicorn, h11); {args.write_size}-byte stream writes\n")
    print(f"{'client':<24} {'ms/request':>11} {'vs raw':>7} {'events/s':>10} {'vs raw':>7}")
    print("-" * 63)
    for name, client in clients.items():
        request_ratio = per_request[name] / per_request[client.baseline]
        event_ratio = per_event[name] / per_event[client.baseline]
        print(f"{name:<24} {per_request[name] * 1000:>11.3f} {request_ratio:>6.2f}x "
              f"{1 / per_event[name]:>10,.0f} {event_ratio:>6.2f}x")
    if official is None:
        print(f"{'openai':<24} (not installed: pip install openai to compare)")
    sdk = "maas-sdk MaaS"
    request_ok = per_request[sdk] / per_request[RAW] <= REQUEST_TARGET
    stream_ok = 1 / per_event[sdk] >= STREAM_TARGET
    print("\n'vs raw': cost per request or per event relative to raw httpx (sync rows to the sync")
    print("client, async rows to httpx.AsyncClient); lower is better.")
    print(f"targets: MaaS request <= {REQUEST_TARGET}x raw: {'met' if request_ok else 'MISSED'}; "
          f"MaaS stream >= {STREAM_TARGET:,.0f} typed events/s: {'met' if stream_ok else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
