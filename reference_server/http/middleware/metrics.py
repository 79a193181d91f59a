"""Counts every HTTP request by route template, method and status, and times it (pure ASGI, so
streamed responses pass through untouched). Labels come from closed sets (`request_labels`)."""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from reference_server.http.metrics import ServerMetrics, request_labels


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
            route, method, status_label = request_labels(scope, status)
            self.metrics.requests.labels(route, method, status_label).inc()
            self.metrics.request_latency.labels(route).observe(time.perf_counter() - start)
            if status in (429, 503, 413):
                self.metrics.rejections.labels({429: "overloaded", 503: "unavailable",
                                                413: "too_large"}[status]).inc()
