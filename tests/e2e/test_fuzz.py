"""Schemathesis fuzzes the running server against its own OpenAPI document.

Every operation of `/openapi.json` gets its documented example, then valid and invalid
bodies, parameters and headers generated from the schemas. Whatever arrives, the server
must answer with no 5xx, with a status, content type, headers and body the document
declares, and must reject what the schemas call invalid.

Generated requests name the real models (so sampling parameters reach the engine, not
just a 404) and ask for at most a few tokens, which keeps the run within about a minute
on two cores; everything else is sent as generated.
"""

from __future__ import annotations

import json
from typing import Any, Dict, Optional, Type

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from pydantic import BaseModel

from maas_sdk.protocol import ErrorBody
from reference_server.launcher import ServerProcess
from reference_server.openapi import OPERATIONS, openapi_document
from tests.conftest import API_KEY, EMBEDDER, GENERATOR

pytestmark = pytest.mark.slow

MAX_TOKENS = 3
# The model each operation's generated requests use.
MODEL_FOR = {
    "/v1/completions": GENERATOR,
    "/v1/chat/completions": GENERATOR,
    "/v1/embeddings": EMBEDDER,
    "/v1/classifications": EMBEDDER,
    "/v1/tokenize": GENERATOR,
    "/v1/detokenize": GENERATOR,
    "/v1/evaluations": GENERATOR,
    "/v1/fine_tuning/jobs": GENERATOR,
}
STREAM_CHUNK: Dict[str, Type[BaseModel]] = {
    op.path: op.stream for op in OPERATIONS if op.stream is not None
}
CHECKS = [
    schemathesis.checks.not_a_server_error,
    schemathesis.checks.status_code_conformance,
    schemathesis.checks.content_type_conformance,
    schemathesis.checks.response_headers_conformance,
    schemathesis.checks.response_schema_conformance,
    schemathesis.checks.negative_data_rejection,
]
CONFIG = schemathesis.Config.from_dict({
    "phases": {"coverage": {"enabled": False}, "stateful": {"enabled": False}},
    "generation": {"mode": "all"},
})

# The document the server serves (tests/server/test_openapi.py checks they are equal), built
# here so the operations are known when tests are collected.
schema = schemathesis.openapi.from_dict(openapi_document(), config=CONFIG)


def bound(case: Any) -> None:
    """Point generated bodies at the real model and cap the tokens they ask for."""
    body = case.body
    if not isinstance(body, dict):
        return
    model = MODEL_FOR.get(case.operation.path)
    if model is not None and isinstance(body.get("model"), str) and body["model"]:
        body["model"] = model
    if case.operation.path in STREAM_CHUNK:
        for name in ("max_tokens", "max_completion_tokens"):
            if isinstance(body.get(name), int) and body[name] > MAX_TOKENS:
                body[name] = MAX_TOKENS
        if body.get("max_tokens") is None and body.get("max_completion_tokens") is None:
            body["max_tokens"] = MAX_TOKENS


def check_stream_events(path: str, response: Any) -> None:
    """Each event of a stream is a chunk of the operation's model or an error, then `[DONE]`."""
    chunk_model = STREAM_CHUNK[path]
    events = [line[len("data: "):] for line in response.text.split("\n") if line.startswith("data: ")]
    assert events and events[-1] == "[DONE]", response.text[-300:]
    for data in events[:-1]:
        payload = json.loads(data)
        model: Optional[Type[BaseModel]] = ErrorBody if "error" in payload else chunk_model
        assert model is not None
        model.model_validate(payload)


@schema.parametrize()
@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_api_conforms_to_its_document(case: Any, server: ServerProcess) -> None:
    bound(case)
    response = case.call_and_validate(base_url=server.url, headers={"Authorization": f"Bearer {API_KEY}"},
                                      checks=CHECKS, timeout=60)
    if response.headers.get("content-type", [""])[0].startswith("text/event-stream"):
        check_stream_events(case.operation.path, response)
