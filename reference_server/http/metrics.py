"""Prometheus metrics (served at `GET /metrics`), named after vLLM's and TGI's where they overlap.

`/metrics` is open, so no label names anything a caller chose: fine-tuned models are counted
together under `model="fine-tuned"`, methods outside the standard ones are "other", routes are
the route templates (or "unmatched"), statuses the ones HTTP defines.

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
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.metrics_core import Metric

if TYPE_CHECKING:
    from reference_server.inference.engine.adapters import AdapterCache
    from reference_server.inference.engine.generation import RequestReport, StepReport
    from reference_server.inference.registry import ModelRegistry, ServedModel
    from reference_server.storage.layout import DataLayout

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
TOKEN_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0, 2.5)
BATCH_BUCKETS = (1, 2, 4, 8, 12, 16, 24, 32, 48, 64, 128)
FINE_TUNED = "fine-tuned"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
STATUSES = frozenset(int(s) for s in HTTPStatus) | {499}


def model_label(served: ServedModel) -> str:
    """The `model` label of `served`: its id for a base model, one shared label for every
    fine-tuned model (whose id is its owner's business)."""
    return served.id if served.owner is None else FINE_TUNED


def request_labels(scope: Mapping[str, Any], status: int) -> tuple[str, str, str]:
    """(route, method, status) labels of a request, each from a closed set."""
    template = getattr(scope.get("route"), "path", None)
    # Inside the /v1 mount the route's path is relative to it; the mount's prefix is the root path.
    route = scope.get("root_path", "") + template if template else "unmatched"
    method = scope["method"] if scope["method"] in METHODS else "other"
    return route, method, str(status) if status in STATUSES else "other"


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
        self.kv_live = Gauge("maas_kv_cache_live_tokens", "Tokens the live sequences hold in the KV cache.",
                             ["model"], registry=r)
        self.kv_allocated = Gauge("maas_kv_cache_allocated_tokens",
                                  "Token positions the KV cache holds memory for (all slots).", ["model"],
                                  registry=r)
        self.kv_bytes = Gauge("maas_kv_cache_bytes", "Bytes the KV cache holds (allocated positions).", ["model"],
                              registry=r)
        self.prefix_bytes = Gauge("maas_prefix_cache_bytes", "Bytes of stored prompt prefixes.", ["model"],
                                  registry=r)
        self.prefix_hits = Gauge("maas_prefix_cache_hit_tokens", "Prompt tokens taken from stored prefixes "
                                 "instead of prefilled (cumulative).", ["model"], registry=r)
        self.preemptions = Gauge("maas_num_preemptions", "Background rows (batch lines) preempted to admit "
                                 "interactive requests (cumulative).", ["model"], registry=r)
        self.compiled_buckets = Gauge("maas_engine_compiled_buckets", "Decode batch-size buckets compiled so far "
                                      "(MAAS_ENGINE_COMPILE); steps beyond them run eager.", ["model"], registry=r)
        self.compile_pending = Gauge("maas_engine_compile_pending_buckets", "Decode buckets still compiling in the "
                                     "background (0: decoding at full speed).", ["model"], registry=r)
        self.compile_seconds = Gauge("maas_engine_compile_seconds", "Seconds the compiled decode buckets took to "
                                     "compile, all together.", ["model"], registry=r)
        self.adapters_resident = Gauge("maas_lora_adapters_resident", "Fine-tuned adapters held in memory, per "
                                       "base model.", ["model"], registry=r)
        self.adapter_loads = Gauge("maas_lora_adapter_loads", "Adapters read into memory (cumulative).", ["model"],
                                   registry=r)
        self.adapter_evictions = Gauge("maas_lora_adapter_evictions", "Adapters evicted, least recently used first "
                                       "(cumulative).", ["model"], registry=r)
        self.adapter_load_time = Histogram("maas_lora_adapter_load_seconds", "Time to read an adapter into memory.",
                                           ["model"], buckets=LATENCY_BUCKETS, registry=r)
        self.free_bytes = Gauge("maas_data_dir_free_bytes", "Free space where uploads, jobs and models are stored.",
                                registry=r)
        self.storage_full = Gauge("maas_storage_full", "1 while the data directory has less free space than "
                                  "MAAS_MIN_FREE_BYTES.", registry=r)
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
            # An adapter's requests run on its base model's engine, counted under the base model.
            label = served.parent if served.adapter is not None and served.parent else model_label(served)
            engine.add_observer(EngineMetrics(self, label))  # type: ignore[arg-type]

    def refresh_storage(self, layout: DataLayout, min_free_bytes: int) -> None:
        from reference_server.storage import space

        free = space.free_bytes(layout)
        self.free_bytes.set(free)
        self.storage_full.set(int(free < min_free_bytes))

    def refresh_gauges(self, models: ModelRegistry) -> None:
        totals: dict[str, dict[str, float]] = defaultdict(lambda: {"running": 0, "waiting": 0})
        for served in models.list():
            if served.adapter is not None:
                continue  # its base model's engine, counted there
            stats: Callable[[], dict[str, int]] | None = None
            if served.engine is not None:
                stats = served.engine.stats
            elif served.batcher is not None:
                stats = getattr(served.batcher, "stats", None)
            if stats is None:
                continue
            values = stats()
            adapters = served.engine.adapters if served.engine is not None else getattr(served.batcher, "adapters", None)
            if adapters is not None:  # a generator's adapters, or an encoder's fine-tuned classifiers
                self._refresh_adapters(model_label(served), adapters, values)
            total = totals[model_label(served)]
            for name in total:
                total[name] += values.get(name, 0)
            if "kv_live_tokens" in values:
                total.setdefault("kv_bytes", 0)
                total["kv_bytes"] += values["kv_allocated_tokens"] * values["kv_bytes_per_token"]
                for name in _KV_STATS:
                    total[name] = total.get(name, 0) + values[name]
        for label, total in totals.items():
            self.running.labels(label).set(total["running"])
            self.waiting.labels(label).set(total["waiting"])
            if "kv_bytes" in total:
                self.kv_live.labels(label).set(total["kv_live_tokens"])
                self.kv_allocated.labels(label).set(total["kv_allocated_tokens"])
                self.kv_bytes.labels(label).set(total["kv_bytes"])
                self.prefix_bytes.labels(label).set(total["prefix_cache_bytes"])
                self.prefix_hits.labels(label).set(total["prefix_hit_tokens"])
                self.preemptions.labels(label).set(total["preemptions"])
                self.compiled_buckets.labels(label).set(total["compiled_buckets"])
                self.compile_seconds.labels(label).set(total["compile_ms"] / 1e3)
                self.compile_pending.labels(label).set(total["compile_pending"])


    def _refresh_adapters(self, label: str, adapters: AdapterCache, values: dict[str, int]) -> None:
        self.adapters_resident.labels(label).set(values.get("adapters_resident", 0))
        self.adapter_loads.labels(label).set(values.get("adapter_loads", 0))
        self.adapter_evictions.labels(label).set(values.get("adapter_evictions", 0))
        histogram = self.adapter_load_time.labels(label)
        for seconds in adapters.take_load_times():
            histogram.observe(seconds)


# Engine stats summed per model label into the KV cache gauges.
_KV_STATS = ("kv_live_tokens", "kv_allocated_tokens", "prefix_cache_bytes", "prefix_hit_tokens", "preemptions",
             "compiled_buckets", "compile_ms", "compile_pending")


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
        if report.decoded:
            self.batch_size.observe(report.decoded)

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
