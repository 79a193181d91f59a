"""Bad input against the running server: Schemathesis fuzzing against its own OpenAPI
document, then hand-written cases that fuzzing does not reach.

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
import socket
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from pydantic import BaseModel

from maas_sdk.protocol import ErrorBody
from reference_server.http.openapi import openapi_document
from reference_server.http.routes import OPERATIONS
from reference_server.testing import ServerProcess
from tests.constants import API_KEY, EMBEDDER, GENERATOR
from tests.helpers import post_declared_and_chunked

pytestmark = pytest.mark.slow

MAX_TOKENS = 3
# The model each operation's generated requests use.
MODEL_FOR = {
    "/v1/completions": GENERATOR,
    "/v1/chat/completions": GENERATOR,
    "/v1/embeddings": EMBEDDER,
    "/v1/classifications": EMBEDDER,
    "/v1/rerank": EMBEDDER,
    "/rerank": EMBEDDER,
    "/v2/rerank": EMBEDDER,
    "/score": EMBEDDER,
    "/v1/score": EMBEDDER,
    "/v1/tokenize": GENERATOR,
    "/v1/detokenize": GENERATOR,
    "/v1/evaluations": GENERATOR,
    "/v1/fine_tuning/jobs": GENERATOR,
    "/v1/messages": GENERATOR,
    "/v1/messages/count_tokens": GENERATOR,
}
STREAM_CHUNK: dict[str, type[BaseModel]] = {
    op.path: op.stream for op in OPERATIONS if op.stream is not None
}
NAMED_EVENTS = {op.path for op in OPERATIONS if op.named_events}
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
    "auth": {"openapi": {"bearerAuth": {"bearer": API_KEY}}},
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
    """Each event of a stream is a chunk of the operation's model or an error, then `[DONE]`;
    or, where events are named (Anthropic's), each names its own type and the last ends it."""
    chunk_model = STREAM_CHUNK[path]
    if path in NAMED_EVENTS:
        frames = [frame.split("\n") for frame in response.text.split("\n\n") if frame]
        for event_line, data_line in frames:
            event = chunk_model.model_validate_json(data_line.removeprefix("data: ")).model_dump()
            assert event_line == f"event: {event['type']}", frames
        assert frames and frames[-1][0] in ("event: message_stop", "event: error"), response.text[-300:]
        return
    events = [line[len("data: "):] for line in response.text.split("\n") if line.startswith("data: ")]
    assert events and events[-1] == "[DONE]", response.text[-300:]
    for data in events[:-1]:
        payload = json.loads(data)
        model: type[BaseModel] | None = ErrorBody if "error" in payload else chunk_model
        assert model is not None
        model.model_validate(payload)


@schema.parametrize()
@settings(max_examples=50, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_api_conforms_to_its_document(case: Any, server: ServerProcess) -> None:
    bound(case)
    response = case.call_and_validate(base_url=server.url, checks=CHECKS, timeout=60)
    if response.headers.get("content-type", [""])[0].startswith("text/event-stream"):
        check_stream_events(case.operation.path, response)


# Hand-written bad input: (what, route, raw body, the parameter the 400 must name).
def _json(**fields: Any) -> bytes:
    return json.dumps({"model": GENERATOR, "prompt": "Hi", **fields}).encode()


BAD_BODIES = [
    ("malformed JSON", "/v1/completions", b'{"model": ', "body"),
    ("array instead of object", "/v1/completions", b"[1, 2]", "body"),
    ("empty body", "/v1/completions", b"", "body"),
    ("invalid UTF-8", "/v1/completions", b'{"model": "\xff\xfe"}', "body"),
    ("nested too deeply", "/v1/completions", b"[" * 100_000 + b"]" * 100_000, "body"),
    ("integer of 5000 digits", "/v1/completions", b'{"max_tokens": ' + b"9" * 5000 + b"}", "body"),
    ("wrong type", "/v1/completions", _json(max_tokens="many"), "max_tokens"),
    ("huge float", "/v1/completions", _json(max_tokens=1e30), "max_tokens"),
    ("seed beyond 64 bits", "/v1/completions", _json(seed=2**80), "seed"),
    ("negative max_tokens", "/v1/completions", _json(max_tokens=-5), "max_tokens"),
    ("max_tokens over the server's cap", "/v1/completions", _json(max_tokens=10**6), "max_tokens"),
    ("NaN", "/v1/completions", _json()[:-1] + b', "temperature": NaN}', "temperature"),
    ("unknown field", "/v1/completions", _json(max_tokenz=5), "max_tokenz"),
    ("lone surrogate", "/v1/completions", _json()[:-1] + b', "stop": "\\ud800"}', "stop"),
    ("empty prompt list", "/v1/completions", _json(prompt=[]), "prompt"),
    ("seventeen stop sequences", "/v1/completions", _json(stop=[f"s{i}" for i in range(17)]), "stop"),
    ("prompt token id outside the vocabulary", "/v1/completions", _json(prompt=[1, 2**40]), "prompt"),
    ("n over the server's cap", "/v1/completions", _json(n=1000), "n"),
    ("too many logprobs", "/v1/completions", _json(logprobs=21), "logprobs"),
    ("scoring without echo", "/v1/completions", _json(max_tokens=0), "max_tokens"),
    ("logit_bias key not a token id", "/v1/completions", _json(logit_bias={"abc": 1}), "logit_bias"),
    ("top_logprobs without logprobs", "/v1/chat/completions",
     json.dumps({"model": GENERATOR, "messages": [{"role": "user", "content": "x"}], "top_logprobs": 2}).encode(),
     "top_logprobs"),
    ("prompt longer than the context", "/v1/completions", _json(prompt="word " * 9000), "prompt"),
    ("no messages", "/v1/chat/completions", json.dumps({"model": GENERATOR, "messages": []}).encode(), "messages"),
    ("unknown role", "/v1/chat/completions",
     json.dumps({"model": GENERATOR, "messages": [{"role": "robot", "content": "x"}]}).encode(), "messages[0].role"),
    ("empty input list", "/v1/embeddings", json.dumps({"model": EMBEDDER, "input": []}).encode(), "input"),
    ("too many inputs", "/v1/embeddings", json.dumps({"model": EMBEDDER, "input": ["a"] * 2049}).encode(), "input"),
    ("input longer than the model takes", "/v1/embeddings",
     json.dumps({"model": EMBEDDER, "input": "word " * 600}).encode(), "input"),
    ("token id outside the vocabulary", "/v1/embeddings",
     json.dumps({"model": EMBEDDER, "input": [[2**70]]}).encode(), "input"),
    ("too many documents to rerank", "/v1/rerank",
     json.dumps({"model": EMBEDDER, "query": "q", "documents": ["a"] * 1001}).encode(), "documents"),
    ("rerank document object with an unknown field", "/v2/rerank",
     json.dumps({"model": EMBEDDER, "query": "q", "documents": [{"text": "a", "id": 1}]}).encode(), "documents[0].id"),
    ("score text_1 neither one nor as many as text_2", "/score",
     json.dumps({"model": EMBEDDER, "text_1": ["a", "b"], "text_2": ["c", "d", "e"]}).encode(), "text_1"),
    ("form body to a JSON route", "/v1/completions", b"model=x&prompt=y", "body"),
]


@pytest.mark.parametrize(("what", "path", "raw", "param"), BAD_BODIES, ids=[case[0] for case in BAD_BODIES])
def test_bad_input_is_a_400_naming_the_parameter(server: ServerProcess, what: str, path: str, raw: bytes,
                                                 param: str) -> None:
    reply = httpx.post(server.url + path, content=raw, timeout=30, headers={
        "authorization": f"Bearer {API_KEY}", "content-type": "application/json"})
    assert reply.status_code == 400, reply.text
    error = reply.json()["error"]
    assert error["param"] == param, error
    assert error["type"] == "invalid_request_error"
    if "context" in what:
        assert "8192" in error["message"] and error["code"] == "context_length_exceeded"


def test_oversized_bodies_are_413_whether_declared_or_chunked(server: ServerProcess) -> None:
    big = _json(prompt="x" * (3 * 1024 * 1024))
    headers = {"authorization": f"Bearer {API_KEY}", "content-type": "application/json"}
    for reply in post_declared_and_chunked(f"{server.base_url}/completions", headers, big, 65536):
        assert reply.status_code == 413, reply.text
        assert reply.json()["error"]["code"] == "request_too_large"


def raw_request(server: ServerProcess, method: str, target: str) -> tuple[int, str]:
    """Send `target` exactly as written (no client-side normalisation of `..`)."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(f"{method} {target} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {API_KEY}\r\n"
                     "Connection: close\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body.decode(errors="replace")


@pytest.mark.parametrize("target", [
    "/v1/files/../../etc/passwd", "/v1/files/..%2F..%2Fetc%2Fpasswd", "/v1/files/..%2F..%2Fetc%2Fpasswd/content",
    "/v1/files/%2e%2e%2f%2e%2e%2fetc%2fpasswd/content", "/v1/files/file-..%2F..%2F..%2Fetc%2Fpasswd/content",
    "/v1/fine_tuning/jobs/..%2F..%2Fetc%2Fpasswd",
])
def test_path_traversal_in_ids_finds_nothing(server: ServerProcess, target: str) -> None:
    for method in ("GET", "DELETE"):
        status, body = raw_request(server, method, target)
        assert status in (404, 405), (method, status, body)
        assert "root:" not in body and json.loads(body)["error"]


def test_wrong_methods_and_content_types(server: ServerProcess) -> None:
    headers = {"authorization": f"Bearer {API_KEY}"}
    wrong = httpx.put(f"{server.base_url}/completions", headers=headers, json={})
    assert wrong.status_code == 405 and wrong.json()["error"]["code"] == "method_not_allowed"
    upload = httpx.post(f"{server.base_url}/files", headers=headers, json={"purpose": "fine-tune"})
    assert upload.status_code == 400 and upload.json()["error"]["param"] == "file"
