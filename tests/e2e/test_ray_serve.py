"""The server scaled out on Ray Serve, for real: `maas serve --ray --replicas 2` starts a local
Ray cluster on this machine (2 ingress replicas of 1 thread, one fine-tuning supervisor), sharing
a real PostgreSQL database and one data directory. One cluster for the whole module (Ray starts
slowly); the last test shuts it down."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from maas_sdk import MaaS
from reference_server.testing import ServerProcess
from tests.constants import API_KEY, EMBEDDER, GENERATOR
from tests.helpers import training_job_under_way
from tests.postgres import PostgresServer

pytestmark = pytest.mark.slow

DATA = Path(__file__).resolve().parents[1] / "data"
REPLICAS = 2
HEADER = "x-maas-replica"


class Cluster:
    def __init__(self, proc: ServerProcess, log: Path) -> None:
        self.proc = proc
        self.log = log
        self.http = httpx.Client(base_url=proc.base_url, headers={"Authorization": f"Bearer {API_KEY}"},
                                 timeout=120)

    def ready_replicas(self, within: float) -> set[str]:
        """The replicas answering `/ready` 200, once there are `REPLICAS` of them."""
        seen: set[str] = set()
        deadline = time.monotonic() + within
        while len(seen) < REPLICAS:
            assert time.monotonic() < deadline, f"only {sorted(seen)} became ready within {within} s"
            try:
                answer = httpx.get(f"{self.proc.url}/ready", timeout=10)
                if answer.status_code == 200:
                    seen.add(answer.headers[HEADER])
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        return seen

    def until_both(self, call: Callable[[], httpx.Response], within: float = 120) -> dict[str, httpx.Response]:
        """Repeat `call` until each replica has answered it with a 2xx; the last answer of each."""
        answers: dict[str, httpx.Response] = {}
        failures: list[str] = []
        deadline = time.monotonic() + within
        while len(answers) < REPLICAS:
            assert time.monotonic() < deadline, f"only {sorted(answers)} succeeded; last failures {failures[-3:]}"
            response = call()
            if response.is_success:
                answers[response.headers[HEADER]] = response
            else:
                failures.append(f"{response.status_code} {response.text[:200]}")
                time.sleep(0.2)
        return answers

    def gcs_address(self) -> str:
        found = re.search(r"Ray cluster at (\S+)", self.log.read_text(errors="replace"))
        assert found, "the server logs the address of its Ray cluster"
        return found.group(1)


@pytest.fixture(scope="module")
def cluster(postgres: PostgresServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    workdir = tmp_path_factory.mktemp("ray")
    env = {"MAAS_API_KEYS": API_KEY, "MAAS_DATA_DIR": str(workdir / "data"), "MAAS_THREADS": "1",
           "MAAS_DATABASE_URL": postgres.create_database(), "MAAS_SHUTDOWN_GRACE": "30",
           "RAY_USAGE_STATS_ENABLED": "0"}
    log = workdir / "serve.log"
    proc = ServerProcess(env=env, log_path=log, ready_timeout=600,
                         extra_args=["--ray", "--replicas", str(REPLICAS)])
    proc.start()
    try:
        c = Cluster(proc, log)
        c.ready_replicas(within=600)
        yield c
        c.http.close()
    finally:
        proc.stop(grace=120)


def test_requests_spread_across_both_replicas(cluster: Cluster) -> None:
    seen = [cluster.http.get("/models").headers[HEADER] for _ in range(40)]
    assert len(set(seen)) == REPLICAS, seen
    assert min(seen.count(name) for name in set(seen)) >= 4  # spread, not one and a stray
    metrics = cluster.until_both(lambda: httpx.get(f"{cluster.proc.url}/metrics", timeout=10))
    for replica, answer in metrics.items():
        assert f'replica="{replica}"' in answer.text
        assert re.search(rf'maas_requests_total\{{[^}}]*replica="{replica}"', answer.text)


def test_a_file_uploaded_through_one_replica_is_read_through_the_other(cluster: Cluster) -> None:
    body = (DATA / "sentiment_validation.jsonl").read_bytes()
    uploaded = cluster.http.post("/files", files={"file": ("valid.jsonl", body)}, data={"purpose": "fine-tune"})
    assert uploaded.status_code == 200, uploaded.text
    file_id, writer = uploaded.json()["id"], uploaded.headers[HEADER]
    reads = cluster.until_both(lambda: cluster.http.get(f"/files/{file_id}/content"))
    assert writer in reads
    assert all(answer.content == body for answer in reads.values())
    listed = cluster.until_both(lambda: cluster.http.get("/files"))
    assert all(file_id in [f["id"] for f in answer.json()["data"]] for answer in listed.values())


def test_a_batch_runs_once_and_both_replicas_answer_for_it(cluster: Cluster) -> None:
    lines = "".join(json.dumps({"custom_id": f"e{i}", "method": "POST", "url": "/v1/embeddings",
                                "body": {"model": EMBEDDER, "input": f"text {i}"}}) + "\n" for i in range(6))
    uploaded = cluster.http.post("/files", files={"file": ("batch.jsonl", lines.encode())}, data={"purpose": "batch"})
    assert uploaded.status_code == 200, uploaded.text
    created = cluster.http.post("/batches", json={"input_file_id": uploaded.json()["id"],
                                                  "endpoint": "/v1/embeddings", "completion_window": "24h"})
    assert created.status_code == 200, created.text
    batch_id = created.json()["id"]
    deadline = time.monotonic() + 120
    while (batch := cluster.http.get(f"/batches/{batch_id}").json())["status"] != "completed":
        assert time.monotonic() < deadline and batch["status"] in ("validating", "in_progress", "finalizing"), batch
        time.sleep(0.3)
    answers = cluster.until_both(lambda: cluster.http.get(f"/batches/{batch_id}"))
    assert all(a.json()["request_counts"] == {"total": 6, "completed": 6, "failed": 0} for a in answers.values())
    output = cluster.http.get(f"/files/{batch['output_file_id']}/content").text.splitlines()
    assert [json.loads(line)["custom_id"] for line in output] == [f"e{i}" for i in range(6)], "each line once"


@pytest.fixture(scope="module")
def fine_tuned(cluster: Cluster) -> str:
    """A classifier fine-tuned through the cluster (once for the module); its model id."""
    with MaaS(api_key=API_KEY, base_url=cluster.proc.base_url, timeout=120) as client:
        train = client.files.upload(DATA / "sentiment_train.jsonl")
        job = client.fine_tuning.jobs.create(model=EMBEDDER, training_file=train.id, suffix="ray", seed=3,
                                             hyperparameters={"max_steps": 12, "batch_size": 16})
        done = job.wait(poll_interval=0.5, timeout=600)
    assert done.status == "succeeded" and done.fine_tuned_model, done.error
    assert len([e for e in cluster.http.get(f"/fine_tuning/jobs/{job.id}/events?limit=100").json()["data"]
                if e["message"].startswith("Fine-tuning started")]) == 1  # ran once, on the one supervisor
    return done.fine_tuned_model


def classified_by_both(cluster: Cluster, model: str) -> None:
    answers = cluster.until_both(lambda: cluster.http.post(
        "/classifications", json={"model": model, "input": ["Wonderful, friendly staff!"]}))
    for answer in answers.values():
        scores = answer.json()["data"][0]["scores"]
        assert set(scores) == {"negative", "positive"}
        assert sum(scores.values()) == pytest.approx(1.0)


def test_a_classifier_fine_tuned_through_the_cluster_is_served_by_both(cluster: Cluster, fine_tuned: str) -> None:
    classified_by_both(cluster, fine_tuned)


def test_a_job_cancelled_through_a_replica_is_stopped_by_the_supervisor(cluster: Cluster) -> None:
    with MaaS(api_key=API_KEY, base_url=cluster.proc.base_url, timeout=120) as client:
        job = training_job_under_way(client, EMBEDDER, DATA / "sentiment_train.jsonl")
        asked = time.monotonic()
        cancelled = client.fine_tuning.jobs.cancel(job.id)
        assert cancelled.status == "cancelled" and cancelled.finished_at is not None
        assert time.monotonic() - asked < 25
        assert client.fine_tuning.jobs.retrieve(job.id).status == "cancelled"


# Run as a Ray driver of its own (so this test process never joins the cluster): kill the actor of
# the replica named argv[2], as a crash would, without letting Ray core restart it in place.
KILL_REPLICA = """
import sys, ray
ray.init(address=sys.argv[1], logging_level="ERROR", log_to_driver=False)
names = [a for a in ray.util.list_named_actors(all_namespaces=True)
         if a["name"].startswith("SERVE_REPLICA::") and a["name"].endswith(sys.argv[2])]
assert len(names) == 1, names
ray.kill(ray.get_actor(names[0]["name"], namespace=names[0]["namespace"]), no_restart=True)
print("killed", names[0]["name"])
"""


def test_a_replica_killed_mid_flight_costs_no_request_and_comes_back(cluster: Cluster, fine_tuned: str) -> None:
    before = cluster.ready_replicas(within=60)
    victim = min(before)
    started = threading.Barrier(17)

    def complete(i: int) -> tuple[str, str]:
        with MaaS(api_key=API_KEY, base_url=cluster.proc.base_url, timeout=120, max_retries=5) as client:
            started.wait()
            answer = client.generate(f"Count to ten, number {i}:", model=GENERATOR, max_tokens=24,
                                     min_tokens=24, temperature=0)
            return answer.text, answer.finish_reason

    # The cluster's token is in ~/.ray, where Ray put it when the cluster started.
    env = {**os.environ, "RAY_AUTH_MODE": "token"}
    with ThreadPoolExecutor(16) as pool:
        futures = [pool.submit(complete, i) for i in range(16)]
        started.wait()
        time.sleep(1.0)  # the requests are in flight on both replicas
        kill = subprocess.run([sys.executable, "-c", KILL_REPLICA, cluster.gcs_address(), victim], env=env,
                              capture_output=True, text=True, timeout=120, check=False)
        results = [f.result(timeout=300) for f in futures]
    assert kill.returncode == 0 and "killed" in kill.stdout, kill.stdout + kill.stderr
    assert len(results) == 16
    assert all(text and reason == "length" for text, reason in results)
    after = cluster.ready_replicas(within=300)
    assert victim not in after and len(after - before) == 1  # Ray started a new replica in its place
    classified_by_both(cluster, fine_tuned)  # the new replica learned the fine-tuned model from the store


def test_a_model_deleted_through_one_replica_is_gone_from_both(cluster: Cluster, fine_tuned: str) -> None:
    deleted = cluster.http.delete(f"/models/{fine_tuned}")
    assert deleted.status_code == 200, deleted.text
    gone: set[str] = set()
    deadline = time.monotonic() + 60
    while len(gone) < REPLICAS:
        assert time.monotonic() < deadline, f"still served by a replica other than {sorted(gone)}"
        answer = cluster.http.post("/classifications", json={"model": fine_tuned, "input": ["Fine."]})
        if answer.status_code == 404:
            gone.add(answer.headers[HEADER])
        else:
            assert answer.status_code == 200, answer.text
            gone.discard(answer.headers[HEADER])
            time.sleep(0.2)


def test_a_shutdown_drains_the_streams_in_flight(cluster: Cluster) -> None:
    """Last: it stops the cluster. SIGTERM while a stream is half-way: the stream ends normally."""
    pieces: list[str] = []
    finish: str | None = None
    with MaaS(api_key=API_KEY, base_url=cluster.proc.base_url, timeout=120) as client, \
            client.generate("Tell me about the sea.", model=GENERATOR, max_tokens=40, min_tokens=40,
                            temperature=0, stream=True) as stream:
        for chunk in stream:
            if not pieces:
                assert cluster.proc.process is not None
                cluster.proc.process.send_signal(signal.SIGTERM)
            pieces.append(chunk.text)
            finish = chunk.finish_reason or finish
    assert finish == "length"
    assert len([p for p in pieces if p]) >= 30
    assert cluster.proc.process is not None
    assert cluster.proc.process.wait(timeout=120) == 0
