"""Bad input against the running server: Schemathesis against its own OpenAPI document, then
hand-written cases that fuzzing does not reach.

`test_api_conforms_to_its_document` runs the schemathesis command line as a user would, with
`schemathesis.toml` beside this file: every check and every phase (the document's examples,
coverage of each schema keyword, fuzzing, and stateful sequences that follow the document's
links from the operations that create resources to those that take their ids), on valid and
invalid requests. The server must answer with no 5xx, with a status, content type, headers and
body the document declares; it must accept what the schemas call valid and refuse what they
call invalid. `fuzz_hooks.py` supplies the data no document can describe (which models and
files exist).

The server is started for this test with small limits, which its document then carries:
generation stops at `MAAS_MAX_TOKENS_LIMIT` tokens, so the run stays within a few minutes on
two cores; fine-tuning jobs and batches are created but not run (so a job or batch the run
creates can always be cancelled, as the document promises of one that has not ended).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from reference_server.testing import ServerProcess
from tests.constants import API_KEY, EMBEDDER, GENERATOR, SERVER_THREADS
from tests.helpers import post_declared_and_chunked

pytestmark = pytest.mark.slow

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
# Small enough that a generation costs little (one token), large enough for n, best_of and several prompts.
LIMITS = {"MAAS_MAX_TOKENS_LIMIT": "1", "MAAS_MAX_TOKENS_DEFAULT": "1", "MAAS_MAX_N": "2",
          "MAAS_MAX_PROMPTS": "2", "MAAS_EMBED_MAX_INPUTS": "8"}
BATCH_DATA = json.dumps({"custom_id": "1", "method": "POST", "url": "/v1/chat/completions", "body": {
    "model": GENERATOR, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1}}) + "\n"
CHAT_DATA = "".join(json.dumps({"messages": [{"role": "user", "content": question},
                                             {"role": "assistant", "content": answer}]}) + "\n"
                    for question, answer in [("Hi", "Arr, hello."), ("Bye", "Arr, farewell.")])


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    workdir = tmp_path_factory.mktemp("fuzz-server")
    env = {"MAAS_API_KEYS": API_KEY, "MAAS_DATA_DIR": str(workdir / "data"), "MAAS_DTYPE": "float32",
           "MAAS_THREADS": SERVER_THREADS, "MAAS_FINE_TUNING_SUPERVISOR": "false",
           "MAAS_BATCH_RUNNER": "false",
           **LIMITS}
    with ServerProcess(env=env, log_path=workdir / "server.log") as proc:
        yield proc


def test_api_conforms_to_its_document(fuzz_server: ServerProcess) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MAAS_FUZZ_API_KEY": API_KEY, "NO_COLOR": "1"}
    for name, purpose, data in [("MAAS_FUZZ_CHAT_FILE", "fine-tune", CHAT_DATA), ("MAAS_FUZZ_BATCH_FILE", "batch",
                                                                                  BATCH_DATA)]:
        upload = httpx.post(f"{fuzz_server.base_url}/files", headers={"authorization": f"Bearer {API_KEY}"},
                            data={"purpose": purpose}, files={"file": ("data.jsonl", data.encode())}, timeout=60)
        assert upload.status_code == 200, upload.text
        env[name] = upload.json()["id"]
    command = [sys.executable, "-m", "schemathesis.cli", "--config-file", str(HERE / "schemathesis.toml"),
               "--no-color", "run", f"{fuzz_server.url}/openapi.json"]
    run = subprocess.run(command, check=False, env=env, cwd=ROOT, capture_output=True, text=True, timeout=900)
    summary = run.stdout.strip().splitlines()[-1] if run.stdout.strip() else ""
    assert run.returncode == 0, run.stdout[-20000:] + run.stderr[-5000:]
    # Clean: no failure and no error (warnings, such as ids the run could not find, are allowed).
    assert "failure" not in summary and "error" not in summary, summary


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


def test_an_upload_with_an_unknown_field_is_refused_naming_it(server: ServerProcess) -> None:
    reply = httpx.post(f"{server.base_url}/files", headers={"authorization": f"Bearer {API_KEY}"},
                       data={"purpose": "fine-tune", "colour": "red"},
                       files={"file": ("a.jsonl", b'{"prompt": "a", "completion": "b"}\n')}, timeout=30)
    assert reply.status_code == 400 and reply.json()["error"]["param"] == "colour", reply.text
