"""A keyless server on loopback, as a developer runs it, against what a hostile web page or a slow
client would do: cross-site requests, requests that can never fit the queue, connections that
never finish their headers or body, and a drain with idle connections open. Its log names the
request of every line."""

from __future__ import annotations

import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from reference_server.testing import ServerProcess
from tests.constants import API_KEY, GENERATOR

pytestmark = pytest.mark.slow

ALLOWED_HOST = "maas.internal"
CORS_ORIGIN = "http://app.example"
TIMEOUT = 1.0  # header and body timeouts of the guarded server
JSON = {"content-type": "application/json"}


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    workdir = tmp_path_factory.mktemp("guarded")
    env = {
        "MAAS_API_KEYS": "",
        "MAAS_ENABLED_MODELS": GENERATOR,
        "MAAS_MAX_RUNNING": "2",
        "MAAS_MAX_QUEUED": "4",
        "MAAS_MAX_PROMPTS": "64",
        "MAAS_ALLOWED_HOSTS": ALLOWED_HOST,
        "MAAS_CORS_ORIGINS": CORS_ORIGIN,
        "MAAS_HEADER_TIMEOUT": str(TIMEOUT),
        "MAAS_BODY_TIMEOUT": str(TIMEOUT),
        "MAAS_MAX_CONCURRENT_UPLOADS": "1",
        "MAAS_DATA_DIR": str(workdir / "data"),
        "MAAS_THREADS": "1",
    }
    with ServerProcess(env=env, log_path=workdir / "server.log", extra_args=["--access-log"]) as proc:
        yield proc


def test_a_request_larger_than_the_queue_is_a_400_not_a_retryable_429(guarded: ServerProcess) -> None:
    reply = httpx.post(f"{guarded.base_url}/completions", timeout=30,
                       json={"model": GENERATOR, "prompt": ["Hi"] * 10, "max_tokens": 1})
    assert reply.status_code == 400, reply.text
    error = reply.json()["error"]
    assert (error["param"], error["code"]) == ("prompt", "too_many_prompts")
    assert "at most 6" in error["message"]
    assert "retry-after" not in reply.headers


def test_prompts_per_request_are_capped(guarded: ServerProcess) -> None:
    reply = httpx.post(f"{guarded.base_url}/completions", timeout=30,
                       json={"model": GENERATOR, "prompt": ["Hi"] * 65, "max_tokens": 1})
    assert reply.status_code == 400, reply.text
    assert reply.json()["error"]["param"] == "prompt"
    assert "at most 64" in reply.json()["error"]["message"]


SIMPLE_BODIES = [("text/plain", b'{"model": "%s", "prompt": "Hi", "max_tokens": 1}' % GENERATOR.encode()),
                 ("application/x-www-form-urlencoded", b"model=x&prompt=y"),
                 ("", b'{"model": "m", "prompt": "Hi"}')]


@pytest.mark.parametrize(("content_type", "body"), SIMPLE_BODIES, ids=["text-plain", "form", "none"])
def test_json_routes_need_a_json_content_type(guarded: ServerProcess, server: ServerProcess, content_type: str,
                                              body: bytes) -> None:
    for target, headers in ((guarded, {}), (server, {"authorization": f"Bearer {API_KEY}"})):
        if content_type:
            headers["content-type"] = content_type
        reply = httpx.post(f"{target.base_url}/completions", content=body, headers=headers, timeout=30)
        assert reply.status_code == 415, reply.text
        assert reply.json()["error"]["param"] == "Content-Type"


@pytest.mark.parametrize(("host", "status"), [
    ("evil.example", 403), ("127.0.0.1.nip.io", 403), ("localhost", 200), ("127.0.0.1", 200),
    ("app.localhost", 200), (ALLOWED_HOST, 200),
])
def test_a_keyless_server_answers_only_loopback_and_allowed_hosts(guarded: ServerProcess, host: str,
                                                                   status: int) -> None:
    reply = httpx.get(f"{guarded.base_url}/models", headers={"host": f"{host}:{guarded.port}"}, timeout=30)
    assert reply.status_code == status, reply.text
    if status == 403:
        assert reply.json()["error"]["param"] == "Host"


@pytest.mark.parametrize(("origin", "status"), [
    ("https://evil.example", 403), ("null", 403), (CORS_ORIGIN, 200), ("http://localhost:5173", 200),
])
def test_a_keyless_server_refuses_foreign_origins(guarded: ServerProcess, origin: str, status: int) -> None:
    reply = httpx.post(f"{guarded.base_url}/tokenize", headers={"origin": origin, **JSON}, timeout=30,
                       json={"model": GENERATOR, "text": "Hello"})
    assert reply.status_code == status, reply.text
    if status == 403:
        assert reply.json()["error"]["param"] == "Origin"


def test_a_foreign_preflight_gets_no_cors_grant(guarded: ServerProcess) -> None:
    reply = httpx.options(f"{guarded.base_url}/completions", timeout=30, headers={
        "origin": "https://evil.example", "access-control-request-method": "POST"})
    assert reply.status_code == 403
    assert "access-control-allow-origin" not in reply.headers


def raw_connection(server: ServerProcess) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    sock.settimeout(30)
    return sock


def closed_after(sock: socket.socket) -> tuple[float, bytes]:
    """Seconds until the server closes `sock`, and everything it sent before."""
    started = time.monotonic()
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    return time.monotonic() - started, received


@pytest.mark.parametrize("head", [b"", b"GET /v1/models HTTP/1.1\r\nHost: localhost\r\nX-Slow:"],
                         ids=["nothing", "half-the-headers"])
def test_incomplete_headers_time_out(guarded: ServerProcess, head: bytes) -> None:
    with raw_connection(guarded) as sock:
        sock.sendall(head)
        seconds, received = closed_after(sock)
    assert TIMEOUT * 0.5 < seconds < TIMEOUT + 3, seconds
    assert not received.startswith(b"HTTP/1.1 200")


def test_an_incomplete_body_times_out_with_a_408(guarded: ServerProcess) -> None:
    with raw_connection(guarded) as sock:
        sock.sendall(b"POST /v1/tokenize HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 100\r\n\r\n" + b'{"model": ')
        seconds, received = closed_after(sock)
    assert TIMEOUT * 0.5 < seconds < TIMEOUT + 3, seconds
    assert received.startswith(b"HTTP/1.1 408"), received[:200]
    assert b"body_timeout" in received and b"connection: close" in received.lower()


def test_uploads_received_at_once_are_bounded(guarded: ServerProcess) -> None:
    boundary = "b0undary"
    with raw_connection(guarded) as sock:
        sock.sendall(f"POST /v1/files HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100000\r\n"
                     f"Content-Type: multipart/form-data; boundary={boundary}\r\n\r\n--{boundary}\r\n".encode())
        time.sleep(0.2)
        second = httpx.post(f"{guarded.base_url}/files", files={"file": ("a.jsonl", b'{"text": "a", "label": "b"}\n')},
                            data={"purpose": "fine-tune"}, timeout=30)
        assert second.status_code == 429, second.text
        assert second.headers["retry-after"]
        closed_after(sock)  # the stalled upload times out and frees its place
    again = httpx.post(f"{guarded.base_url}/files", files={"file": ("a.jsonl", b'{"text": "a", "label": "b"}\n')},
                       data={"purpose": "fine-tune"}, timeout=30)
    assert again.status_code == 200, again.text


def test_every_log_line_of_a_request_names_it(guarded: ServerProcess) -> None:
    request_id = f"req-log-{time.time_ns()}"
    with httpx.Client(base_url=guarded.base_url, headers={"x-request-id": request_id}, timeout=30) as http:
        uploaded = http.post("/files", files={"file": ("a.jsonl", b'{"text": "a", "label": "b"}\n')},
                             data={"purpose": "fine-tune"})
        assert uploaded.status_code == 200, uploaded.text
        file_id = uploaded.json()["id"]
        (Path(guarded.env["MAAS_DATA_DIR"]) / "files" / file_id).unlink()
        failed = http.get(f"/files/{file_id}/content")  # its bytes are gone: an unexpected error
        assert failed.status_code == 500
        assert failed.headers["x-request-id"] == request_id
    with pytest.raises(httpx.ReadTimeout):  # a client that gives up: a 499 line
        httpx.post(f"{guarded.base_url}/completions", headers={"x-request-id": request_id, **JSON},
                   json={"model": GENERATOR, "prompt": "Count to a thousand:", "max_tokens": 2000,
                         "ignore_eos": True}, timeout=httpx.Timeout(30, read=1.0))
    time.sleep(0.5)
    assert guarded.log_path is not None
    lines = [line for line in guarded.log_path.read_text().splitlines() if request_id in line]
    assert any(f"GET /v1/files/{file_id}/content 500" in line for line in lines), lines
    assert any("unhandled error on GET" in line for line in lines), lines
    assert any("POST /v1/completions 499" in line for line in lines), lines
    assert any("POST /v1/files 200" in line for line in lines), lines


def test_a_drain_closes_idle_connections_and_is_not_held_by_a_stalled_upload(tmp_path: Path) -> None:
    env = {"MAAS_API_KEYS": "", "MAAS_DEFAULT_MODELS": "false", "MAAS_DATA_DIR": str(tmp_path / "data"),
           "MAAS_BODY_TIMEOUT": "2", "MAAS_KEEP_ALIVE_TIMEOUT": "60", "MAAS_SHUTDOWN_GRACE": "30"}
    with ServerProcess(env=env, log_path=tmp_path / "server.log") as proc:
        idle = raw_connection(proc)
        idle.sendall(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n")
        assert idle.recv(65536).startswith(b"HTTP/1.1 200")
        stalled = raw_connection(proc)
        stalled.sendall(b"POST /v1/files HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100000\r\n"
                        b"Content-Type: multipart/form-data; boundary=x\r\n\r\n--x\r\n")
        time.sleep(0.3)
        assert proc.process is not None
        started = time.monotonic()
        proc.process.send_signal(signal.SIGTERM)
        idle_closed, _ = closed_after(idle)
        assert idle_closed < 2, "an idle kept-alive connection is closed when the drain starts"
        proc.process.wait(timeout=30)
        stopped = time.monotonic() - started
        idle.close()
        stalled.close()
    assert stopped < 10, f"the drain took {stopped:.1f} s of its 30 s grace"
