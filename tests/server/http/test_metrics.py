"""`/metrics` reports what the engines measured: after real generation and embedding calls
against the session server, the per-request latency histograms, the token counters and the
batch-size histogram have counted them, and the load gauges are exported per model."""

from __future__ import annotations

import time

import httpx

from reference_server.testing import ServerProcess
from tests.constants import API_KEY, EMBEDDER, GENERATOR

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]

LATENCIES = (
    "maas_time_to_first_token_seconds",
    "maas_inter_token_latency_seconds",
    "maas_e2e_request_latency_seconds",
    "maas_request_queue_time_seconds",
)


def scrape(server: ServerProcess) -> Samples:
    from prometheus_client.parser import text_string_to_metric_families

    response = httpx.get(f"{server.url}/metrics", timeout=30)
    assert response.status_code == 200
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_engine_observations_reach_metrics(server: ServerProcess) -> None:
    headers = {"Authorization": f"Bearer {API_KEY}"}
    before = scrape(server)
    with httpx.Client(base_url=server.base_url, headers=headers, timeout=120) as http:
        completion = http.post("/completions", json={"model": GENERATOR, "prompt": "The sea is",
                                                     "max_tokens": 6, "min_tokens": 6, "temperature": 0})
        assert completion.status_code == 200, completion.text
        with http.stream("POST", "/chat/completions", json={
            "model": GENERATOR, "messages": [{"role": "user", "content": "Name a colour."}],
            "max_tokens": 5, "min_tokens": 5, "temperature": 0, "stream": True,
        }) as stream:
            assert stream.status_code == 200
            stream.read()
        embedding = http.post("/embeddings", json={"model": EMBEDDER, "input": ["one sentence", "another"]})
        assert embedding.status_code == 200, embedding.text
    generated = 6 + 5
    prompt_tokens = completion.json()["usage"]["prompt_tokens"]
    embedded_tokens = embedding.json()["usage"]["prompt_tokens"]

    # The engine records a request just after sending its last token: allow it a moment.
    done = "maas_e2e_request_latency_seconds_count"
    deadline = time.monotonic() + 10
    after = scrape(server)
    while value(after, done, model=GENERATOR) < value(before, done, model=GENERATOR) + 2 and time.monotonic() < deadline:
        time.sleep(0.2)
        after = scrape(server)

    def grew(name: str, model: str = GENERATOR) -> float:
        return value(after, name, model=model) - value(before, name, model=model)

    for name in LATENCIES:
        assert grew(f"{name}_count") >= 2, name
        assert grew(f"{name}_sum") > 0, name
    # Each request's first token comes from its prefill, every later one from a decode step
    # and one inter-token gap.
    assert grew("maas_inter_token_latency_seconds_count") >= generated - 2
    assert grew("maas_batch_size_count") >= generated - 2
    assert grew("maas_batch_size_sum") >= generated - 2
    assert grew("maas_generation_tokens_total") >= generated
    assert grew("maas_prompt_tokens_total") >= prompt_tokens + 1
    assert grew("maas_prompt_tokens_total", EMBEDDER) >= embedded_tokens > 0
    for gauge in ("maas_num_requests_running", "maas_num_requests_waiting", "maas_kv_cache_live_tokens",
                  "maas_kv_cache_allocated_tokens", "maas_kv_cache_bytes", "maas_prefix_cache_bytes",
                  "maas_num_preemptions", "maas_engine_compiled_buckets", "maas_engine_compile_pending_buckets",
                  "maas_engine_compile_seconds"):
        assert (gauge, (("model", GENERATOR),)) in after, gauge
    # The test server decodes eager (MAAS_ENGINE_COMPILE=off): nothing compiled, nothing pending.
    assert value(after, "maas_engine_compiled_buckets", model=GENERATOR) == 0
    assert value(after, "maas_engine_compile_pending_buckets", model=GENERATOR) == 0
    # Nothing runs now: no live tokens, every row given back, and the two prompts stored.
    assert value(after, "maas_kv_cache_live_tokens", model=GENERATOR) == 0
    assert value(after, "maas_kv_cache_allocated_tokens", model=GENERATOR) == 0
    assert value(after, "maas_prefix_cache_bytes", model=GENERATOR) > 0
