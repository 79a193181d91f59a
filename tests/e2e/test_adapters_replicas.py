"""Adapters across replicas sharing one store and data directory (what each Ray Serve replica
runs, docs/scale-out.md), with two real `maas serve` processes: the one that supervises jobs
and a follower. No replica reads an adapter before a request needs it; the follower serves a
model registered after it started within MAAS_MODEL_SYNC_SECONDS; a model deleted through one
replica stops being served by the other within the same delay."""

from __future__ import annotations

import time
from collections.abc import Iterator
from types import SimpleNamespace

import httpx
import pytest

from reference_server.http.middleware.auth import key_id
from reference_server.testing import ServerProcess
from reference_server.training.random_adapters import register_adapter
from tests.constants import GENERATOR
from tests.e2e.adapter_data import data_with_adapters

pytestmark = pytest.mark.slow

KEY = "sk-replicas-0001"
SYNC_SECONDS = 1.0


@pytest.fixture(scope="module")
def replicas(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimpleNamespace]:
    workdir = tmp_path_factory.mktemp("replicas")
    layout, store, folders = data_with_adapters(workdir, 2, targets=None)
    first = register_adapter(store, layout, folders[0], owner=key_id(KEY), base=GENERATOR, base_path="")
    env = {"MAAS_API_KEYS": KEY, "MAAS_ENABLED_MODELS": GENERATOR, "MAAS_THREADS": "1", "MAAS_DTYPE": "float32",
           "MAAS_DATA_DIR": str(layout.root), "MAAS_MODEL_SYNC_SECONDS": str(SYNC_SECONDS)}
    with ServerProcess(env=env, log_path=workdir / "supervisor.log") as supervisor, \
            ServerProcess(env={**env, "MAAS_FINE_TUNING_SUPERVISOR": "false"},
                          log_path=workdir / "follower.log") as follower:
        yield SimpleNamespace(supervisor=supervisor, follower=follower, first=first, store=store, layout=layout,
                              second_folder=folders[1])


def chat(server: ServerProcess, model: str) -> httpx.Response:
    return httpx.post(f"{server.base_url}/chat/completions", timeout=120, headers={"authorization": f"Bearer {KEY}"},
                      json={"model": model, "messages": [{"role": "user", "content": "Hi!"}], "max_tokens": 8,
                            "temperature": 0})


def adapter_loads(server: ServerProcess) -> float:
    text = httpx.get(f"{server.url}/metrics", timeout=30).text
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith("maas_lora_adapter_loads{"))


def until(check: object, timeout: float) -> float:
    """Seconds until `check()` holds (AssertionError past `timeout`)."""
    start = time.monotonic()
    while not check():  # type: ignore[operator]
        assert time.monotonic() - start < timeout, "not reached in time"
        time.sleep(0.1)
    return time.monotonic() - start


def test_replicas_read_an_adapter_only_when_a_request_needs_it(replicas: SimpleNamespace) -> None:
    assert adapter_loads(replicas.supervisor) == adapter_loads(replicas.follower) == 0
    assert chat(replicas.follower, replicas.first).status_code == 200
    assert adapter_loads(replicas.follower) == 1
    assert adapter_loads(replicas.supervisor) == 0


def test_a_model_registered_later_reaches_the_follower(replicas: SimpleNamespace) -> None:
    second = register_adapter(replicas.store, replicas.layout, replicas.second_folder, owner=key_id(KEY),
                              base=GENERATOR, base_path="", suffix="later")
    until(lambda: chat(replicas.follower, second).status_code == 200, 10 * SYNC_SECONDS + 30)


def test_a_model_deleted_through_one_replica_is_gone_from_both(replicas: SimpleNamespace) -> None:
    assert chat(replicas.supervisor, replicas.first).status_code == 200
    deleted = httpx.delete(f"{replicas.supervisor.base_url}/models/{replicas.first}", timeout=60,
                           headers={"authorization": f"Bearer {KEY}"})
    assert deleted.status_code == 200, deleted.text
    assert chat(replicas.supervisor, replicas.first).status_code == 404
    took = until(lambda: chat(replicas.follower, replicas.first).status_code == 404, 10 * SYNC_SECONDS + 30)
    assert took <= 3 * SYNC_SECONDS + 5  # a sync period, and a request's time, on a loaded machine
