"""Load, faults and shutdown, over real HTTP with the real generator.

A server with one decode slot and one queue place shows the bounded queue (429 with
`Retry-After` at once, the SDK's retries getting through), 503 while loading and while
draining, slots freed when clients hang up, SIGTERM letting short streams finish and
ending long ones with a `server_shutdown` event, SDK retries spanning a restart, and a
crash mid-stream surfacing as `APIConnectionError`. A crash inside one request is shown
in-process: a 500 that names no path, and the server keeps serving.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from maas_sdk import APIConnectionError, AsyncMaaS, InternalServerError, MaaS, MaaSError
from reference_server.app import create_app
from reference_server.inference.registry import ModelRegistry
from reference_server.settings import Settings
from reference_server.testing import ServerProcess, free_port
from tests.constants import API_KEY, EMBEDDER, GENERATOR
from tests.helpers import post_declared_and_chunked

pytestmark = pytest.mark.slow

AUTH = {"authorization": f"Bearer {API_KEY}"}
DATA = Path(__file__).resolve().parents[1] / "data"
GRACE = 3.0
UPLOAD_LIMIT = 64 * 1024
LONG = {"model": GENERATOR, "prompt": "Count to a million:", "max_tokens": 4000, "ignore_eos": True,
        "temperature": 0}


class ObservedServer(ServerProcess):
    """A server process that records what `/v1` answers while its models are still loading."""

    while_loading: list[httpx.Response]

    def wait_ready(self) -> None:
        self.while_loading = []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not self.while_loading:
            try:
                reply = httpx.get(f"{self.base_url}/models", headers=AUTH, timeout=2)
            except httpx.TransportError:
                time.sleep(0.05)
                continue
            self.while_loading.append(reply)
        super().wait_ready()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ObservedServer]:
    """One decode slot and one queue place: overload is easy to reach and to see."""
    workdir = tmp_path_factory.mktemp("tiny")
    env = {
        "MAAS_API_KEYS": API_KEY,
        "MAAS_ENABLED_MODELS": GENERATOR,
        "MAAS_MAX_RUNNING": "1",
        "MAAS_MAX_QUEUED": "1",
        "MAAS_SHUTDOWN_GRACE": str(GRACE),
        "MAAS_MAX_UPLOAD_BYTES": str(UPLOAD_LIMIT),
        "MAAS_DATA_DIR": str(workdir / "data"),
        "MAAS_THREADS": "1",
    }
    proc = ObservedServer(env=env, port=free_port(), log_path=workdir / "server.log")
    proc.start()
    yield proc
    proc.stop()


def running(server: ServerProcess) -> float:
    text = httpx.get(f"{server.url}/metrics", timeout=5).text
    pattern = rf'^maas_num_requests_running\{{model="{re.escape(GENERATOR)}"\}} (\S+)$'
    found = re.search(pattern, text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def waiting(server: ServerProcess) -> float:
    text = httpx.get(f"{server.url}/metrics", timeout=5).text
    found = re.search(rf'^maas_num_requests_waiting\{{model="{re.escape(GENERATOR)}"\}} (\S+)$', text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def wait_until_idle(server: ServerProcess, within: float) -> float:
    """Seconds until no sequence decodes (fails after `within`)."""
    start = time.monotonic()
    while running(server) > 0:
        assert time.monotonic() - start < within, f"a slot was still busy after {within} s"
        time.sleep(0.05)
    return time.monotonic() - start


def events(raw: str) -> list[str]:
    return [line[len("data: "):] for line in raw.split("\n") if line.startswith("data: ")]


def test_api_answers_503_while_loading(tiny: ObservedServer) -> None:
    first = tiny.while_loading[0]
    assert first.status_code == 503, first.text
    assert first.json()["error"]["code"] == "loading"
    assert int(first.headers["retry-after"]) >= 1


async def test_full_queue_answers_429_at_once_and_sdk_retries_get_through(tiny: ObservedServer) -> None:
    body = {"model": GENERATOR, "prompt": "Once upon a time", "max_tokens": 48, "ignore_eos": True, "stream": True}
    async with httpx.AsyncClient(base_url=tiny.base_url, headers=AUTH, timeout=120) as http:

        async def one() -> tuple[int, float, dict[str, str], bytes]:
            started = time.monotonic()
            async with http.stream("POST", "/completions", json=body) as reply:
                head = time.monotonic() - started
                return reply.status_code, head, dict(reply.headers), await reply.aread()

        results = await asyncio.gather(*(one() for _ in range(6)))
    statuses = sorted(status for status, *_ in results)
    # One decodes and one waits; the others are refused (unless a slot freed as they arrived).
    assert statuses.count(200) >= 2 and statuses.count(429) >= 3, statuses
    for status, head, headers, raw in results:
        if status == 429:
            assert head < 1.0, "a full queue answers at once"
            assert int(headers["retry-after"]) >= 1
            assert json.loads(raw)["error"]["code"] == "overloaded"
        else:
            assert events(raw.decode())[-1] == "[DONE]"

    async with AsyncMaaS(api_key=API_KEY, base_url=tiny.base_url, max_retries=20, timeout=120) as client:
        replies = await asyncio.gather(*(client.generate("Hello", model=GENERATOR, max_tokens=8, ignore_eos=True)
                                         for _ in range(6)))
    assert all(r.usage is not None and r.usage.completion_tokens == 8 for r in replies)


async def test_classification_work_is_queued_within_bounds_too(tiny: ObservedServer) -> None:
    """Zero-shot classification runs the generator in a thread: the same one-running,
    one-waiting bound applies, not the thread pool's unbounded queue."""
    body = {"model": GENERATOR, "input": ["The soup was cold and the waiter rude."] * 4,
            "labels": ["positive", "negative", "neutral"]}
    async with httpx.AsyncClient(base_url=tiny.base_url, headers=AUTH, timeout=120) as http:
        replies = await asyncio.gather(*(http.post("/classifications", json=body) for _ in range(6)))
    statuses = sorted(reply.status_code for reply in replies)
    assert statuses.count(200) >= 2 and statuses.count(429) >= 3, statuses
    refused = next(reply for reply in replies if reply.status_code == 429)
    assert refused.json()["error"]["code"] == "overloaded" and refused.headers["retry-after"] == "1"


def test_a_refused_multi_prompt_request_leaves_nothing_running(tiny: ObservedServer) -> None:
    """One slot and one queue place, the slot taken by a stream: of two prompts the first is
    queued and the second refused, so the whole request is a 429 and the one already admitted
    is cancelled rather than left waiting to decode."""
    wait_until_idle(tiny, 30)
    with httpx.Client(base_url=tiny.base_url, headers=AUTH, timeout=60) as http, \
            http.stream("POST", "/completions", json={**LONG, "stream": True}) as busy:
        assert busy.status_code == 200
        # Kept: a discarded line iterator is closed at once, and closing it closes the
        # connection, which frees the slot this test needs busy.
        lines = busy.iter_lines()
        next(lines)
        reply = httpx.post(f"{tiny.base_url}/completions", headers=AUTH, timeout=30,
                           json={**LONG, "prompt": ["One,", "Two,"]})
        assert reply.status_code == 429, reply.text
        assert reply.json()["error"]["code"] == "overloaded" and reply.headers["retry-after"] == "1"
        deadline = time.monotonic() + 3  # the engine drops it at its next step
        while waiting(tiny) > 0:
            assert time.monotonic() < deadline, "the admitted prompt of the refused request was cancelled"
            time.sleep(0.05)
        assert running(tiny) == 1  # the stream still holds its slot
    assert wait_until_idle(tiny, 3) < 3


def test_a_request_that_can_never_fit_is_a_400(tiny: ObservedServer) -> None:
    """Three prompts can never be held by one slot and one queue place: retrying cannot help."""
    reply = httpx.post(f"{tiny.base_url}/completions", headers=AUTH, timeout=30,
                       json={**LONG, "prompt": ["One,", "Two,", "Three,"]})
    assert reply.status_code == 400, reply.text
    assert reply.json()["error"]["code"] == "too_many_prompts" and "retry-after" not in reply.headers


def test_a_disconnected_stream_frees_its_slot(tiny: ObservedServer) -> None:
    wait_until_idle(tiny, 30)
    with httpx.Client(base_url=tiny.base_url, headers=AUTH, timeout=60) as http, \
            http.stream("POST", "/completions", json={**LONG, "stream": True}) as reply:
        assert reply.status_code == 200
        chunks = reply.iter_lines()
        assert sum(1 for line, _ in zip(chunks, range(6)) if line.startswith("data: ")) >= 3
        assert running(tiny) == 1
    # The socket is closed now, thousands of tokens before the end.
    assert wait_until_idle(tiny, 3) < 3


def test_a_disconnected_request_frees_its_slot(tiny: ObservedServer) -> None:
    wait_until_idle(tiny, 30)
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{tiny.base_url}/completions", headers=AUTH, json=LONG, timeout=1.5)
    assert wait_until_idle(tiny, 3) < 3


def test_oversized_uploads_are_413_whether_declared_or_chunked(tiny: ObservedServer) -> None:
    line = json.dumps({"text": "a fine sentence " * 8, "label": "positive"}) + "\n"
    data = (line * (4 * UPLOAD_LIMIT // len(line))).encode()
    request = httpx.Request("POST", f"{tiny.base_url}/files", headers=AUTH, files={"file": ("big.jsonl", data)},
                            data={"purpose": "fine-tune"})
    body = request.read()
    multipart = {**AUTH, "content-type": request.headers["content-type"]}
    for reply in post_declared_and_chunked(f"{tiny.base_url}/files", multipart, body, 8192):
        assert reply.status_code == 413, reply.text
        assert reply.json()["error"]["param"] == "file"
    small = httpx.post(f"{tiny.base_url}/files", headers=AUTH, files={"file": ("ok.jsonl", line.encode() * 4)},
                       data={"purpose": "fine-tune"}, timeout=30)
    assert small.status_code == 200, small.text


def test_sdk_retries_span_a_restart(tiny: ObservedServer) -> None:
    """The retry budget (8 retries, back-off 0.5 s doubling to 8 s, or the server's Retry-After)
    spans about 30 s without a server: here, a restart with its model load."""
    results: list[str] = []
    errors: list[MaaSError] = []
    stop = threading.Event()

    def loop() -> None:
        with MaaS(api_key=API_KEY, base_url=tiny.base_url, timeout=60) as base:
            client = base.with_options(max_retries=8)
            while not stop.is_set():
                try:
                    results.append(client.generate("Hi", model=GENERATOR, max_tokens=2).text)
                except MaaSError as exc:  # any error is a test failure
                    errors.append(exc)
                    return

    worker = threading.Thread(target=loop)
    worker.start()
    try:
        time.sleep(1.0)
        before = len(results)
        tiny.stop()
        tiny.start()
        time.sleep(1.0)
    finally:
        stop.set()
        worker.join(timeout=120)
    assert not errors, errors
    assert before > 0 and len(results) > before


def test_sigterm_lets_short_streams_finish_and_ends_long_ones(tiny: ObservedServer) -> None:
    assert tiny.process is not None
    wait_until_idle(tiny, 30)
    short: dict[str, Any] = {}
    long_error: list[MaaSError] = []
    got_first = threading.Barrier(3, timeout=60)

    def short_stream() -> None:
        body = {"model": GENERATOR, "prompt": "Hello", "max_tokens": 30, "ignore_eos": True, "stream": True}
        with httpx.stream("POST", f"{tiny.base_url}/completions", headers=AUTH, json=body, timeout=60) as reply:
            lines = reply.iter_lines()
            first = next(line for line in lines if line.startswith("data: "))
            got_first.wait()
            short["events"] = [first[len("data: "):], *events("\n".join(lines))]

    def long_stream() -> None:
        time.sleep(0.3)  # after the short one: it waits in the queue, then decodes past the grace period
        with MaaS(api_key=API_KEY, base_url=tiny.base_url, max_retries=0, timeout=60) as client:
            stream = client.generate(LONG["prompt"], model=GENERATOR, max_tokens=4000, ignore_eos=True,
                                     temperature=0, stream=True)
            got_first.wait()
            try:
                for _ in stream:
                    pass
            except MaaSError as exc:
                long_error.append(exc)

    threads = [threading.Thread(target=short_stream), threading.Thread(target=long_stream)]
    for thread in threads:
        thread.start()
    got_first.wait()
    sent = time.monotonic()
    tiny.process.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    ready = httpx.get(f"{tiny.url}/ready", timeout=5)
    assert ready.status_code == 503 and ready.json()["error"]["code"] == "draining"
    refused = httpx.post(f"{tiny.base_url}/completions", headers=AUTH, json={**LONG, "max_tokens": 1}, timeout=5)
    assert refused.status_code == 503 and refused.json()["error"]["code"] == "draining"
    assert int(refused.headers["retry-after"]) >= 1
    for thread in threads:
        thread.join(timeout=60)
    code = tiny.process.wait(timeout=30)
    exited = time.monotonic() - sent

    assert short["events"][-1] == "[DONE]"
    assert json.loads(short["events"][-2])["choices"][0]["finish_reason"] == "length", "the short stream finished"
    assert len(long_error) == 1 and isinstance(long_error[0], InternalServerError), long_error
    assert long_error[0].code == "server_shutdown"
    assert GRACE <= exited < GRACE + 10, exited
    assert code in (0, -signal.SIGTERM)
    tiny.stop()


def test_a_stream_cut_by_a_crash_raises_connection_error(tiny: ObservedServer) -> None:
    tiny.start()
    with MaaS(api_key=API_KEY, base_url=tiny.base_url, timeout=60) as client:
        stream = client.generate(LONG["prompt"], model=GENERATOR, max_tokens=4000, ignore_eos=True, stream=True)
        received = []
        with pytest.raises(APIConnectionError):
            for chunk in stream:
                received.append(chunk.text)
                if len(received) == 3:
                    tiny.kill()
    assert len(received) >= 3


def test_a_crash_in_one_request_is_a_500_that_leaks_nothing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    secret = "/home/deploy/.cache/maas/converted/tokenizer.json"

    def explode(self: ModelRegistry, model_id: str, task: str) -> Any:
        raise RuntimeError(f"tokenizer crashed reading {secret}")

    app = create_app(Settings(default_models=False, api_keys=[API_KEY], data_dir=tmp_path))
    monkeypatch.setattr(ModelRegistry, "get_for", explode)
    with TestClient(app, raise_server_exceptions=False) as http:
        deadline = time.monotonic() + 30
        while http.get("/ready").status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        for body in ({"model": GENERATOR, "prompt": "Hi"}, {"model": EMBEDDER, "input": "Hi"}):
            path = "/v1/completions" if "prompt" in body else "/v1/embeddings"
            reply = http.post(path, headers=AUTH, json=body)
            assert reply.status_code == 500
            assert reply.json() == {"error": {"message": "The server failed to handle this request.",
                                              "type": "server_error", "param": None, "code": "internal_error"}}
            assert "/home" not in reply.text and "Traceback" not in reply.text and "tokenizer" not in reply.text
            assert reply.headers["x-request-id"]
        assert http.get("/v1/models", headers=AUTH).status_code == 200, "the server keeps serving"


def test_sigterm_checkpoints_training_and_the_next_start_resumes_it(tmp_path: Path) -> None:
    env = {"MAAS_API_KEYS": API_KEY, "MAAS_ENABLED_MODELS": EMBEDDER, "MAAS_DATA_DIR": str(tmp_path / "data"),
           "MAAS_THREADS": "1"}
    with ServerProcess(env=env, log_path=tmp_path / "server.log") as proc, \
            MaaS(api_key=API_KEY, base_url=proc.base_url, timeout=60) as client:
        upload = client.files.upload(DATA / "sentiment_train.jsonl")
        job = client.fine_tuning.jobs.create(model=EMBEDDER, training_file=upload.id,
                                             hyperparameters={"n_epochs": 1, "batch_size": 16})
        deadline = time.monotonic() + 300
        while (job.step or 0) < 2:
            assert time.monotonic() < deadline and not job.done, job
            time.sleep(0.2)
            job = client.fine_tuning.jobs.retrieve(job.id)
        assert proc.stop() in (0, -signal.SIGTERM)

    with ServerProcess(env=env, log_path=tmp_path / "server.log") as proc, \
            MaaS(api_key=API_KEY, base_url=proc.base_url, timeout=60) as client:
        done = client.fine_tuning.jobs.retrieve(job.id).wait(poll_interval=0.5, timeout=300)
        assert done.status == "succeeded", done.error
        messages = [e.message for e in client.fine_tuning.jobs.events(job.id, limit=100)]
    resumed = [m for m in messages if m.startswith("Fine-tuning resumes from the checkpoint at step")]
    assert resumed, messages
    assert int(resumed[0].split("step ")[1].split(" ")[0]) >= 2
    assert any(m.startswith("Training was stopped") for m in messages), messages
