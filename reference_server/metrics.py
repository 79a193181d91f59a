"""Prometheus metrics (`GET /metrics`), named after vLLM's and TGI's where they overlap.

Each app gets its own `CollectorRegistry`, so several apps (tests, replicas in one
process) never share counters.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Callable, Optional

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

if TYPE_CHECKING:
    from reference_server.registry import ModelRegistry

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
TOKEN_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0, 2.5)
BATCH_BUCKETS = (1, 2, 4, 8, 12, 16, 24, 32, 48, 64, 128)


class ServerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("maas_requests_total", "HTTP requests by route and status.",
                                ["route", "method", "status"], registry=r)
        self.request_latency = Histogram("maas_http_request_duration_seconds",
                                         "Time to the end of the response body.", ["route"],
                                         buckets=LATENCY_BUCKETS, registry=r)
        self.ttft = Histogram("maas_time_to_first_token_seconds", "Arrival to first generated token.",
                              ["model"], buckets=LATENCY_BUCKETS, registry=r)
        self.itl = Histogram("maas_inter_token_latency_seconds", "Gap between consecutive tokens.",
                             ["model"], buckets=TOKEN_BUCKETS, registry=r)
        self.e2e = Histogram("maas_e2e_request_latency_seconds", "Arrival to the last token.", ["model"],
                             buckets=LATENCY_BUCKETS, registry=r)
        self.queue_time = Histogram("maas_request_queue_time_seconds", "Arrival to the start of prefill.",
                                    ["model"], buckets=LATENCY_BUCKETS, registry=r)
        self.prompt_tokens = Counter("maas_prompt_tokens_total", "Prompt tokens processed.", ["model"],
                                     registry=r)
        self.generation_tokens = Counter("maas_generation_tokens_total", "Tokens generated.", ["model"],
                                         registry=r)
        self.batch_size = Histogram("maas_batch_size", "Sequences in each decode step.", ["model"],
                                    buckets=BATCH_BUCKETS, registry=r)
        self.rejections = Counter("maas_rejections_total", "Requests refused by design, by reason.",
                                  ["reason"], registry=r)
        self.running = Gauge("maas_num_requests_running", "Sequences decoding now.", ["model"], registry=r)
        self.waiting = Gauge("maas_num_requests_waiting", "Requests queued for a batch slot.", ["model"],
                             registry=r)

    def refresh_gauges(self, models: "ModelRegistry") -> None:
        for served in models.list():
            stats: Optional[Callable[[], dict]] = None
            if served.engine is not None:
                stats = served.engine.stats
            elif served.batcher is not None:
                stats = getattr(served.batcher, "stats", None)
            if stats is None:
                continue
            values = stats()
            self.running.labels(served.id).set(values.get("running", 0))
            self.waiting.labels(served.id).set(values.get("waiting", 0))


class MetricsMiddleware:
    """Counts every HTTP request by matched endpoint and status, and times it."""

    def __init__(self, app: ASGIApp, metrics: ServerMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, record)
        finally:
            endpoint = scope.get("endpoint")
            route = getattr(endpoint, "__name__", "unmatched")
            self.metrics.requests.labels(route, scope["method"], str(status)).inc()
            self.metrics.request_latency.labels(route).observe(time.perf_counter() - start)
            if status in (429, 503, 413):
                self.metrics.rejections.labels({429: "overloaded", 503: "unavailable",
                                                413: "too_large"}[status]).inc()


async def metrics_endpoint(request: Request) -> Response:
    metrics: ServerMetrics = request.app.state.metrics
    metrics.refresh_gauges(request.app.state.registry)
    return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)


routes = [Route("/metrics", metrics_endpoint, methods=["GET"])]
