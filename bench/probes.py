"""Hostile and careless clients, run beside the soak's load: each probe repeats one abuse the
server must withstand and counts the answers that were not the promised one.

- `health`: `/health` every 100 ms; its latency shows whether anything stalls the event loop.
- `huge bodies`: a 1.4 MB body of 350,000 one-character prompts and a 1.9 MB single prompt,
  each a 400 (too many prompts; longer than the context) without stalling `/health`.
- `never fits`: more prompts than the generation queue can ever hold: a 400, not a 429.
- `made-up methods`: requests with invented HTTP methods; the metric series must stay bounded.
- `cross-site`: a `text/plain` JSON body (415), a foreign Host (403), a foreign Origin (403).
- `slow headers` / `slow body`: connections that stop half-way; closed after the header
  timeout, answered 408 after the body timeout.
- `abandoned`: a 512-input embeddings call whose client leaves after 0.5 s; counted as 499.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import httpx

from bench._common import EMBEDDER, GENERATOR, percentile

JSON = {"content-type": "application/json"}


@dataclass
class Probe:
    """What one probe saw: how often it ran, how often the answer was not the promised one."""

    name: str
    promise: str
    runs: int = 0
    broken: int = 0
    seconds: list[float] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def record(self, ok: bool, seconds: float, note: str = "") -> None:
        self.runs += 1
        self.seconds.append(seconds)
        if not ok:
            self.broken += 1
            if len(self.notes) < 3:
                self.notes.append(note)

    def row(self) -> list[object]:
        return [self.name, self.promise, self.runs, self.broken, percentile(self.seconds, 50),
                percentile(self.seconds, 99), max(self.seconds, default=0.0)]


HEADERS = ["probe", "promise", "runs", "broken", "p50 s", "p99 s", "max s"]


async def _every(interval: float, until: float, step: Callable[[], Awaitable[None]]) -> None:
    while time.monotonic() < until:
        started = time.monotonic()
        await step()
        await asyncio.sleep(max(0.0, interval - (time.monotonic() - started)))


async def _timed(call: Awaitable[httpx.Response]) -> tuple[httpx.Response | None, float, str]:
    started = time.monotonic()
    try:
        reply = await call
    except httpx.HTTPError as exc:
        return None, time.monotonic() - started, f"{type(exc).__name__}: {exc}"
    return reply, time.monotonic() - started, f"{reply.status_code} {reply.text[:120]}"


async def _half_open(host: str, port: int, head: bytes) -> tuple[float, bytes]:
    """Send `head`, then wait until the server closes the connection; (seconds, what it sent)."""
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(head)
    await writer.drain()
    started = time.monotonic()
    received = await asyncio.wait_for(reader.read(), timeout=120)
    writer.close()
    return time.monotonic() - started, received


def _series(metrics: str, name: str) -> int:
    return len(re.findall(rf"^{name}\{{", metrics, re.MULTILINE))


async def run_probes(base_url: str, until: float, capacity: int, header_timeout: float,
                     body_timeout: float) -> list[Probe]:
    root = base_url.removesuffix("/v1")
    url = httpx.URL(root)
    host, port = url.host, url.port or 80
    health = Probe("health", "200 (latency shown)")
    huge = Probe("huge bodies", "400, /health unaffected")
    never = Probe("never fits", "400 too_many_prompts")
    methods = Probe("made-up methods", "series stay bounded")
    cross = Probe("cross-site", "415 / 403 / 403")
    slow_headers = Probe("slow headers", f"closed after {header_timeout:g} s")
    slow_body = Probe("slow body", f"408 after {body_timeout:g} s")
    abandoned = Probe("abandoned", "logged as 499")
    tiny = json.dumps({"model": GENERATOR, "prompt": ["a"] * 350_000, "max_tokens": 1}, separators=(",", ":"))
    single = json.dumps({"model": GENERATOR, "prompt": "word " * 390_000, "max_tokens": 1})
    huge_bodies = [tiny.encode(), single.encode()]

    async with httpx.AsyncClient(base_url=root, timeout=120) as http:
        series_before = _series((await http.get("/metrics")).text, "maas_requests_total")

        async def probe_health() -> None:
            reply, seconds, note = await _timed(http.get("/health"))
            health.record(reply is not None and reply.status_code == 200, seconds, note)

        async def probe_huge() -> None:
            body = huge_bodies[huge.runs % 2]
            reply, seconds, note = await _timed(http.post("/v1/completions", content=body, headers=JSON))
            huge.record(reply is not None and reply.status_code == 400, seconds, note)

        async def probe_never() -> None:
            body = {"model": GENERATOR, "prompt": ["Hi"] * (capacity + 1), "max_tokens": 1}
            reply, seconds, note = await _timed(http.post("/v1/completions", json=body))
            ok = reply is not None and reply.status_code == 400 and reply.json()["error"]["code"] == "too_many_prompts"
            never.record(ok, seconds, note)

        async def probe_methods() -> None:
            started = time.monotonic()
            for i in range(5):
                await http.request(f"X{methods.runs}M{i}", f"/v1/made-up/{methods.runs}-{i}")
            grown = _series((await http.get("/metrics")).text, "maas_requests_total") - series_before
            methods.record(grown <= 20, time.monotonic() - started, f"{grown} new series")

        async def probe_cross() -> None:
            checks = [
                (http.post("/v1/tokenize", content=json.dumps({"model": GENERATOR, "text": "hi"}),
                           headers={"content-type": "text/plain"}), 415),
                (http.get("/v1/models", headers={"host": "rebound.example"}), 403),
                (http.post("/v1/tokenize", json={"model": GENERATOR, "text": "hi"},
                           headers={"origin": "https://evil.example"}), 403),
            ]
            for call, status in checks:
                reply, seconds, note = await _timed(call)
                cross.record(reply is not None and reply.status_code == status, seconds, note)

        async def probe_slow_headers() -> None:
            seconds, received = await _half_open(host, port, b"GET /v1/models HTTP/1.1\r\nHost: localhost\r\nX-")
            slow_headers.record(seconds < header_timeout + 5 and not received, seconds, repr(received[:80]))

        async def probe_slow_body() -> None:
            head = (b"POST /v1/tokenize HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                    b"Content-Length: 100\r\n\r\n{")
            seconds, received = await _half_open(host, port, head)
            slow_body.record(received.startswith(b"HTTP/1.1 408") and seconds < body_timeout + 5, seconds,
                             repr(received[:80]))

        async def probe_abandoned() -> None:
            body = {"model": EMBEDDER, "input": [f"{i} a sentence about shipping and delays" for i in range(512)]}
            started = time.monotonic()
            try:
                await http.post("/v1/embeddings", json=body, timeout=httpx.Timeout(30, read=0.5))
            except httpx.ReadTimeout:
                pass
            abandoned.record(True, time.monotonic() - started)

        await asyncio.gather(
            _every(0.1, until, probe_health), _every(15, until, probe_huge), _every(10, until, probe_never),
            _every(1, until, probe_methods), _every(10, until, probe_cross), _every(10, until, probe_slow_headers),
            _every(10, until, probe_slow_body), _every(10, until, probe_abandoned),
        )
        await asyncio.sleep(1)
        metrics = (await http.get("/metrics")).text
        logged = sum(float(v) for v in re.findall(r'^maas_requests_total\{[^}]*route="/v1/embeddings"[^}]*'
                                                  r'status="499"[^}]*\} (\S+)$', metrics, re.MULTILINE))
        if logged < abandoned.runs:
            abandoned.broken = int(abandoned.runs - logged)
            abandoned.notes.append(f"{logged:.0f} of {abandoned.runs} counted as 499")
    return [health, huge, never, methods, cross, slow_headers, slow_body, abandoned]
