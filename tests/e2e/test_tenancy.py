"""Tenants stay apart: a model fine-tuned with one key is invisible and unusable for another, and
the open endpoints (`/ready`, `/metrics`, `/openapi.json`) name no fine-tuned model. Base models
stay shared. A real MiniLM classifier is fine-tuned (a few rows, one epoch) on a two-key server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest

from maas_sdk import MaaS
from reference_server.testing import ServerProcess
from tests.constants import EMBEDDER

pytestmark = pytest.mark.slow

OWNER, OTHER = "sk-tenant-owner-0001", "sk-tenant-other-0002"
DATA = Path(__file__).resolve().parents[1] / "data"


@pytest.fixture(scope="module")
def tenants(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimpleNamespace]:
    workdir = tmp_path_factory.mktemp("tenants")
    env = {"MAAS_API_KEYS": f"{OWNER},{OTHER}", "MAAS_ENABLED_MODELS": EMBEDDER,
           "MAAS_DATA_DIR": str(workdir / "data"), "MAAS_THREADS": "1"}
    rows = (DATA / "sentiment_train.jsonl").read_text().splitlines()[:16]
    (workdir / "train.jsonl").write_text("\n".join(rows) + "\n")
    with ServerProcess(env=env, log_path=workdir / "server.log") as proc, \
            MaaS(api_key=OWNER, base_url=proc.base_url, timeout=120) as owner:
        train = owner.files.upload(workdir / "train.jsonl")
        heldout = owner.files.upload(DATA / "sentiment_heldout.jsonl", purpose="evals")
        job = owner.fine_tuning.jobs.create(model=EMBEDDER, training_file=train.id, suffix="mine", seed=1,
                                            hyperparameters={"n_epochs": 1})
        done = job.wait(poll_interval=0.5, timeout=600)
        assert done.status == "succeeded", done
        yield SimpleNamespace(server=proc, model=done.fine_tuned_model, heldout=heldout.id)


def call(tenants: SimpleNamespace, key: str, method: str, path: str, body: dict | None = None) -> httpx.Response:
    return httpx.request(method, tenants.server.base_url + path, json=body, timeout=120,
                         headers={"authorization": f"Bearer {key}"})


def test_the_owner_sees_and_uses_its_model(tenants: SimpleNamespace) -> None:
    listed = call(tenants, OWNER, "GET", "/models").json()["data"]
    assert {m["id"] for m in listed} == {EMBEDDER, tenants.model}
    assert call(tenants, OWNER, "GET", f"/models/{tenants.model}").status_code == 200
    reply = call(tenants, OWNER, "POST", "/classifications", {"model": tenants.model, "input": ["Great!"]})
    assert reply.status_code == 200, reply.text


def test_another_key_cannot_see_the_model(tenants: SimpleNamespace) -> None:
    listed = call(tenants, OTHER, "GET", "/models").json()["data"]
    assert [m["id"] for m in listed] == [EMBEDDER], "base models are shared, fine-tuned ones are not"
    retrieved = call(tenants, OTHER, "GET", f"/models/{tenants.model}")
    assert retrieved.status_code == 404
    assert retrieved.json()["error"]["code"] == "model_not_found"


@pytest.mark.parametrize(("path", "body"), [
    ("/classifications", {"input": ["Great!"]}),
    ("/embeddings", {"input": "Great!"}),
    ("/tokenize", {"text": "Great!"}),
    ("/detokenize", {"tokens": [101, 102]}),
    ("/evaluations", {"file": "file-0123456789abcdef01234567"}),
    ("/fine_tuning/jobs", {"training_file": "file-0123456789abcdef01234567"}),
])
def test_another_key_cannot_use_the_model(tenants: SimpleNamespace, path: str, body: dict) -> None:
    reply = call(tenants, OTHER, "POST", path, {"model": tenants.model, **body})
    assert reply.status_code == 404, reply.text
    error = reply.json()["error"]
    assert (error["param"], error["code"]) == ("model", "model_not_found")
    unknown = call(tenants, OTHER, "POST", path, {"model": tenants.model + "x", **body})
    assert unknown.json()["error"] == {**error, "message": error["message"].replace(tenants.model,
                                                                                     tenants.model + "x")}, \
        "another key's model reads exactly like an unknown one"


@pytest.mark.parametrize("path", ["/v1/rerank", "/rerank", "/v2/rerank", "/score", "/v1/score"])
def test_another_key_cannot_rerank_or_score_with_the_model(tenants: SimpleNamespace, path: str) -> None:
    body = {"text_1": "Good?", "text_2": ["Great!"]} if "score" in path else {"query": "Good?", "documents": ["Great!"]}
    replies = {key: httpx.post(tenants.server.url + path, json={"model": tenants.model, **body}, timeout=120,
                               headers={"authorization": f"Bearer {key}"}) for key in (OWNER, OTHER)}
    assert replies[OTHER].status_code == 404, replies[OTHER].text
    assert (replies[OTHER].json()["error"]["param"], replies[OTHER].json()["error"]["code"]) == \
        ("model", "model_not_found")
    # The owner's sentiment classifier has no relevance label: a 400 that says so, not a score.
    assert replies[OWNER].status_code == 400, replies[OWNER].text
    assert replies[OWNER].json()["error"]["param"] == "model" and "relevant" in replies[OWNER].json()["error"]["message"]


def test_open_endpoints_name_no_fine_tuned_model(tenants: SimpleNamespace) -> None:
    call(tenants, OWNER, "POST", "/classifications", {"model": tenants.model, "input": ["Fine."]})
    url = tenants.server.url
    ready = httpx.get(f"{url}/ready", timeout=30)
    assert ready.status_code == 200
    assert ready.json()["models"] == [EMBEDDER]
    assert ready.json()["fine_tuned_models"] == 1
    for path in ("/ready", "/metrics", "/openapi.json"):
        text = httpx.get(url + path, timeout=30).text
        assert tenants.model not in text and ":mine:" not in text, path
    assert json.loads(httpx.get(f"{url}/openapi.json", timeout=30).text)["openapi"]
