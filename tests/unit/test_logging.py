"""`MAAS_LOG` turns on the `maas_sdk` logger; no credential ever reaches a log line."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import httpx
import pytest

from maas_sdk._logging import logger, redact_headers, setup_logging

from .fakes import API_KEY, FakeClock, error_response, generation, json_response, make_client


@pytest.fixture
def clean_logger() -> Iterator[logging.Logger]:
    handlers, level = list(logger.handlers), logger.level
    logger.handlers.clear()
    yield logger
    logger.handlers[:] = handlers
    logger.setLevel(level)


@pytest.mark.parametrize(("value", "level"), [("debug", logging.DEBUG), ("INFO", logging.INFO)])
def test_maas_log_configures_the_logger(
    value: str, level: int, clean_logger: logging.Logger, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAAS_LOG", value)
    setup_logging()
    assert clean_logger.level == level
    assert len(clean_logger.handlers) == 1
    setup_logging()
    assert len(clean_logger.handlers) == 1


def test_no_maas_log_leaves_the_logger_alone(clean_logger: logging.Logger) -> None:
    setup_logging()
    assert clean_logger.handlers == []


def test_logs_requests_answers_and_retries_without_secrets(
    caplog: pytest.LogCaptureFixture, clock: FakeClock
) -> None:
    answers = iter([error_response(503), json_response(generation())])

    def handler(request: httpx.Request) -> httpx.Response:
        return next(answers)

    client = make_client(handler, clock)
    with caplog.at_level(logging.DEBUG, logger="maas_sdk"):
        client.generate("hi", model="m", extra_headers={"X-Api-Key": "topsecret-1", "X-Session-Token": "tok-2"})
    text = caplog.text
    assert "POST" in text and "http://maas.test/v1/completions" in text
    assert "-> 503" in text and "-> 200" in text
    assert "req-1" in text
    assert "retrying" in text
    assert "<redacted>" in text
    for secret in (API_KEY, "topsecret-1", "tok-2"):
        assert secret not in text


def test_redaction_rules() -> None:
    redacted = redact_headers([
        ("Authorization", "Bearer sk-1"), ("api-key", "k"), ("X-Auth-Token", "t"), ("Cookie", "c"),
        ("Proxy-Authorization", "p"), ("Content-Type", "application/json"), ("x-request-id", "r"),
    ])
    assert redacted == {
        "Authorization": "<redacted>", "api-key": "<redacted>", "X-Auth-Token": "<redacted>",
        "Cookie": "<redacted>", "Proxy-Authorization": "<redacted>",
        "Content-Type": "application/json", "x-request-id": "r",
    }
