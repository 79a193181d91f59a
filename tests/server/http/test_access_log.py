"""The access log: one line per request with method, path, status, duration and request id;
never the query string, a header or a body. On by default, off with `--no-access-log`."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from reference_server.app import create_app
from reference_server.cli import build_parser
from reference_server.settings import Settings

KEY = "sk-access-log-secret"


def _lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "reference_server.access"]


def test_one_line_per_request_without_secrets(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="reference_server.access")
    app = create_app(Settings(default_models=False, api_keys=[KEY], data_dir=tmp_path))
    with TestClient(app) as http:
        http.get("/health?token=hidden-value")
        http.post("/v1/completions", json={"model": "m", "prompt": "a private prompt"},
                  headers={"authorization": f"Bearer {KEY}", "x-request-id": "req-given-1"})
    lines = _lines(caplog)
    assert re.fullmatch(r"GET /health 200 \d+\.\dms req_[0-9a-f]{32}", lines[0]), lines
    assert re.fullmatch(r"POST /v1/completions \d{3} \d+\.\dms req-given-1", lines[1]), lines
    text = "\n".join(lines)
    assert KEY not in text and "hidden-value" not in text and "private prompt" not in text


def test_no_access_log_silences_it(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="reference_server.access")
    with TestClient(create_app(Settings(default_models=False, data_dir=tmp_path, access_log=False))) as http:
        http.get("/health")
    assert _lines(caplog) == []


def test_cli_flag_defaults_on() -> None:
    parser = build_parser()
    assert parser.parse_args(["serve"]).access_log is None  # the setting (default on) decides
    assert parser.parse_args(["serve", "--no-access-log"]).access_log is False
    assert parser.parse_args(["serve", "--access-log"]).access_log is True
    assert Settings().access_log is True
