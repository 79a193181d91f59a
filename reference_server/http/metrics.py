"""Prometheus metrics (served at `GET /metrics`), named after vLLM's and TGI's where they overlap.

Each app gets its own `CollectorRegistry`, so several apps (tests, replicas in one
process) never share counters. A replica of a cluster (`MAAS_REPLICA` set) adds a `replica`
label to every sample it exposes, so the scrapes of several replicas can be told apart and summed.

Per-request latencies, token counts and batch sizes come from the generation engine itself
(`EngineMetrics`, one observer per engine), because only the engine knows when a request was
scheduled and when each token was sampled; the HTTP layer would add its own queueing.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.metrics_core import Metric

if TYPE_CHECKING:
    from reference_server.inference.engine.generation import RequestReport, StepReport
    from reference_server.inference.registry import ModelRegistry, ServedModel

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
TOKEN_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0, 2.5)
BATCH_BUCKETS = (1, 2, 4, 8, 12, 16, 24, 32, 48, 64, 128)


class ServerMetrics:
    def __init__(self, replica: str | None = None) -> None:
        self.replica = replica
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
        self._watched: weakref.WeakSet[object] = weakref.WeakSet()
        self._watch_lock = threading.Lock()

    def exposition(self) -> bytes:
        """The Prometheus text of every metric, each sample labelled with the replica if named."""
        return generate_latest(self.registry if self.replica is None else _Labelled(self.registry, self.replica))

    def watch(self, served: ServedModel) -> None:
        """Record `served`'s engine observations from now on (once per engine; idempotent)."""
        engine = served.engine
        if engine is None or engine in self._watched:
            return
        with self._watch_lock:
            if engine in self._watched:
                return
            self._watched.add(engine)
            engine.add_observer(EngineMetrics(self, served.id))  # type: ignore[arg-type]

    def refresh_gauges(self, models: ModelRegistry) -> None:
        for served in models.list():
            stats: Callable[[], dict[str, int]] | None = None
            if served.engine is not None:
                stats = served.engine.stats
            elif served.batcher is not None:
                stats = getattr(served.batcher, "stats", None)
            if stats is None:
                continue
            values = stats()
            self.running.labels(served.id).set(values.get("running", 0))
            self.waiting.labels(served.id).set(values.get("waiting", 0))


class _Labelled:
    """A registry's metrics with one more label on every sample (what `generate_latest` reads)."""

    def __init__(self, registry: CollectorRegistry, replica: str) -> None:
        self.registry = registry
        self.replica = replica

    def collect(self) -> Iterator[Metric]:
        for family in self.registry.collect():
            family.samples = [s._replace(labels={**s.labels, "replica": self.replica}) for s in family.samples]
            yield family


class EngineMetrics:
    """Turns one engine's step and request reports into this app's metrics.

    Called on the engine thread between forward passes (prometheus_client is thread-safe);
    it has the engine observer's two methods without subclassing it, so importing this module
    does not import torch. Latencies count only requests that finished normally ("stop" or
    "length"), as vLLM's do; tokens count whatever was computed.
    """

    def __init__(self, metrics: ServerMetrics, model: str) -> None:
        self.ttft = metrics.ttft.labels(model)
        self.itl = metrics.itl.labels(model)
        self.e2e = metrics.e2e.labels(model)
        self.queue_time = metrics.queue_time.labels(model)
        self.prompt_tokens = metrics.prompt_tokens.labels(model)
        self.generation_tokens = metrics.generation_tokens.labels(model)
        self.batch_size = metrics.batch_size.labels(model)

    def on_step(self, report: StepReport) -> None:
        if report.kind == "decode":
            self.batch_size.observe(report.batch_size)

    def on_request_done(self, report: RequestReport) -> None:
        if report.queue_time_s is not None:  # it was prefilled
            self.prompt_tokens.inc(report.prompt_tokens)
        self.generation_tokens.inc(report.completion_tokens)
        if report.finish_reason not in ("stop", "length"):
            return
        if report.queue_time_s is not None:
            self.queue_time.observe(report.queue_time_s)
        if report.time_to_first_token_s is not None:
            self.ttft.observe(report.time_to_first_token_s)
        for gap in report.inter_token_latencies_s:
            self.itl.observe(gap)
        self.e2e.observe(report.duration_s)
