"""Hardening in-process: bounded metric labels, the settings that must not be silently ignored,
NaN sampling values, training data that no later step could read, and engine failures that name
their requests."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import ValidationError
from starlette.testclient import TestClient

from reference_server import datasets, logs
from reference_server.app import create_app
from reference_server.inference.engine.errors import GenerationError
from reference_server.inference.engine.generation import GenerationEngine
from reference_server.inference.engine.sampling import SamplingParams
from reference_server.inference.loading import LoadedModel
from reference_server.settings import Settings

DEEP = b'{"text": ' + b"[" * 100_000 + b"]" * 100_000 + b', "label": "a"}'
LONE_SURROGATE = b'{"text": "broken \\ud800 text", "label": "b"}'
GOOD = b'{"text": "fine", "label": "a"}'


@pytest.fixture
def http(tmp_path: Path) -> Iterator[TestClient]:
    app = create_app(Settings(default_models=False, data_dir=tmp_path, min_free_bytes=0))
    with TestClient(app, base_url="http://127.0.0.1:8000") as client:
        yield client


def series(client: TestClient, name: str) -> list[dict[str, str]]:
    from prometheus_client.parser import text_string_to_metric_families

    text = client.get("/metrics").text
    return [dict(sample.labels) for family in text_string_to_metric_families(text) for sample in family.samples
            if sample.name == name]


def test_metric_labels_come_from_closed_sets(http: TestClient) -> None:
    before = len(series(http, "maas_requests_total"))
    for i in range(200):
        http.request(f"X{i}METHOD", f"/v1/models/made-up-{i}")
        http.request(f"Y{i}", f"/no/such/route/{i}")
        http.get(f"/v1/files/file-{i:016x}")
    labels = series(http, "maas_requests_total")
    assert len(labels) - before <= 6, labels
    assert {label["method"] for label in labels} <= {"GET", "POST", "DELETE", "other"}
    assert {label["route"] for label in labels} <= {"/metrics", "/v1/models/{model_id:path}", "/v1/files/{file_id}",
                                                    "unmatched"}
    assert all(label["status"].isdigit() for label in labels)


def test_maas_log_is_read_as_the_log_level(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MAAS_LOG_LEVEL", raising=False)
    monkeypatch.setenv("MAAS_LOG", "DEBUG")
    assert Settings().log_level == "debug"
    monkeypatch.setenv("MAAS_LOG_LEVEL", "warning")
    assert Settings().log_level == "warning", "the server's own variable wins"


def test_an_unknown_log_level_fails_loudly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAAS_LOG_LEVEL", "verbose")
    with pytest.raises(ValidationError, match="MAAS_LOG_LEVEL"):
        Settings()


@pytest.mark.parametrize("param", ["temperature", "top_p"])
def test_nan_sampling_values_say_they_must_be_numbers(http: TestClient, param: str) -> None:
    raw = json.dumps({"model": "m", "prompt": "Hi", param: float("nan")})
    reply = http.post("/v1/completions", content=raw, headers={"content-type": "application/json"})
    assert reply.status_code == 400, reply.text
    error = reply.json()["error"]
    assert error["param"] == param
    assert "must be a number" in error["message"], error


@pytest.mark.parametrize(("line", "problem"), [(DEEP, "nested too deeply"), (LONE_SURROGATE, "surrogate")],
                         ids=["deep", "lone-surrogate"])
def test_unreadable_lines_are_refused_naming_the_line(line: bytes, problem: str) -> None:
    with pytest.raises(datasets.DatasetError, match=problem) as refused:
        datasets.validate(GOOD + b"\n" + GOOD + b"\n" + line + b"\n")
    assert refused.value.line == 3


def test_a_valid_surrogate_pair_is_text() -> None:
    emoji = json.dumps({"text": "\U0001f600", "label": "a"}).encode()
    assert b"\\ud83d" in emoji
    assert datasets.validate(emoji + b"\n" + GOOD).lines == 2


async def test_engine_failures_name_the_requests_they_hit(generator: LoadedModel,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    """A failure on the engine's own thread still names its request: the id travels with it."""
    broken = SamplingParams(max_tokens=4, temperature=0.7)
    broken.top_k = "not a number"  # type: ignore[assignment]  # passes validation, then breaks the sampler
    engine = GenerationEngine(generator, max_running=2, max_queued=2)
    engine.start()
    token = logs.request_id.set("req-engine-failure")
    try:
        handle = engine.submit(generator.tokenizer("Hello")["input_ids"], broken)
        with caplog.at_level(logging.ERROR, logger="reference_server"), pytest.raises(GenerationError):
            async for _ in handle:
                pass
    finally:
        logs.request_id.reset(token)
        await engine.stop()
    failures = [r for r in caplog.records if "sampling failed" in r.getMessage()]
    assert failures and all(getattr(r, "request_id", None) == "req-engine-failure" for r in failures)
