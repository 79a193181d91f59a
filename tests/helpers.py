"""Helpers tests share (kept out of conftest.py, which pytest imports on its own)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil

from maas_sdk import MaaS
from maas_sdk.protocol import FineTuningJob
from reference_server.testing import ServerProcess


def post_declared_and_chunked(url: str, headers: dict[str, str], body: bytes, chunk: int) -> list[httpx.Response]:
    """POST `body` twice: once with its Content-Length, once chunked with none declared, so a
    size limit is shown to hold whether or not the client announces the size."""
    declared = httpx.post(url, headers=headers, content=body, timeout=30)
    chunked = httpx.post(url, headers=headers, timeout=30,
                         content=(body[i:i + chunk] for i in range(0, len(body), chunk)))
    return [declared, chunked]


def training_job_under_way(client: MaaS, model: str, training_file: Path) -> FineTuningJob:
    """Upload `training_file`, start a long job on it and wait until it is running and has made
    a step (so a cancellation has a worker to stop); the job as last seen."""
    train = client.files.upload(training_file)
    job = client.fine_tuning.jobs.create(model=model, training_file=train.id, hyperparameters={"n_epochs": 5})
    deadline = time.monotonic() + 300
    while (current := client.fine_tuning.jobs.retrieve(job.id)).status != "running" or not current.step:
        assert time.monotonic() < deadline and current.status in ("validating_files", "queued", "running")
        time.sleep(0.2)
    return current


def server_process(server: ServerProcess) -> psutil.Process:
    assert server.process is not None
    return psutil.Process(server.process.pid)


def cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


def seconds_until_idle(process: psutil.Process, within: float, window: float = 0.5) -> float:
    """Seconds until the process uses under 10% of a core over `window` (fails after `within`)."""
    start = time.monotonic()
    while True:
        before = cpu_seconds(process)
        time.sleep(window)
        if cpu_seconds(process) - before < 0.1 * window:
            return time.monotonic() - start
        assert time.monotonic() - start < within, f"the server was still busy {within} s after the client left"


def ready_client(app: Any) -> Iterator[Any]:
    """A Starlette TestClient over `app`, yielded once the app answers `/ready` (30 s at most)."""
    from starlette.testclient import TestClient

    with TestClient(app) as client:
        deadline = time.monotonic() + 30
        while client.get("/ready").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        yield client
