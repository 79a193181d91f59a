"""Fine-tuned adapters served on the base generator over real HTTP: LoRA results of two keys
(random PEFT adapters of the real base, registered through the store as succeeded jobs) and an
operator's adapter (`MAAS_LORA_MODULES`) share the base model's engine, with two resident
slots for three adapters. Each key sees and uses only its own; a corrupt adapter fails only its
own model, with a clean 409; streaming, n, logprobs and structured outputs work on adapter rows."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest

from maas_sdk import MaaS
from reference_server.http.middleware.auth import key_id
from reference_server.testing import ServerProcess
from reference_server.training.random_adapters import register_adapter
from tests.constants import GENERATOR
from tests.e2e.adapter_data import data_with_adapters

pytestmark = pytest.mark.slow

OWNER, OTHER = "sk-adapter-owner-0001", "sk-adapter-other-0002"
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="module")
def adapters(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimpleNamespace]:
    workdir = tmp_path_factory.mktemp("adapters")
    layout, store, folders = data_with_adapters(workdir, 4, std=0.08)
    corrupt = workdir / "corrupt"
    shutil.copytree(folders[0], corrupt)
    (corrupt / "adapter_model.safetensors").write_bytes(b"not a safetensors file")
    mine = [register_adapter(store, layout, folders[i], owner=key_id(OWNER), base=GENERATOR, base_path="", suffix=f"m{i}")
            for i in (0, 1)]
    theirs = register_adapter(store, layout, folders[2], owner=key_id(OTHER), base=GENERATOR, base_path="", suffix="t")
    broken = register_adapter(store, layout, corrupt, owner=key_id(OWNER), base=GENERATOR, base_path="", suffix="bad")
    env = {"MAAS_API_KEYS": f"{OWNER},{OTHER}", "MAAS_ENABLED_MODELS": GENERATOR, "MAAS_THREADS": "1",
           "MAAS_DTYPE": "float32", "MAAS_DATA_DIR": str(layout.root), "MAAS_MAX_LORAS": "2"}
    with ServerProcess(env=env, log_path=workdir / "server.log",
                       extra_args=["--lora-modules", f"pirate={folders[3]}"]) as proc:
        yield SimpleNamespace(server=proc, mine=mine, theirs=theirs, broken=broken)


def call(ctx: SimpleNamespace, key: str, method: str, path: str, body: dict | None = None) -> httpx.Response:
    return httpx.request(method, ctx.server.base_url + path, json=body, timeout=120,
                         headers={"authorization": f"Bearer {key}"})


def chat(ctx: SimpleNamespace, key: str, model: str, **extra: object) -> httpx.Response:
    return call(ctx, key, "POST", "/chat/completions",
                {"model": model, "messages": QUESTION, "max_tokens": 16, "temperature": 0, **extra})


def test_each_key_lists_its_own_adapters_and_the_operators(adapters: SimpleNamespace) -> None:
    owner = {m["id"] for m in call(adapters, OWNER, "GET", "/models").json()["data"]}
    other = {m["id"] for m in call(adapters, OTHER, "GET", "/models").json()["data"]}
    assert owner == {GENERATOR, "pirate", *adapters.mine, adapters.broken}
    assert other == {GENERATOR, "pirate", adapters.theirs}
    described = call(adapters, OWNER, "GET", f"/models/{adapters.mine[0]}").json()
    assert (described["owned_by"], described["parent"]) == (key_id(OWNER), GENERATOR)


def test_adapters_and_the_base_share_the_engine_concurrently(adapters: SimpleNamespace) -> None:
    calls = [(OWNER, GENERATOR), (OWNER, adapters.mine[0]), (OWNER, adapters.mine[1]), (OTHER, adapters.theirs),
             (OTHER, "pirate"), (OWNER, adapters.mine[0])]
    with ThreadPoolExecutor(len(calls)) as pool:
        replies = list(pool.map(lambda c: chat(adapters, *c), calls))
    assert all(r.status_code == 200 for r in replies), [r.text for r in replies]
    texts = [r.json()["choices"][0]["message"]["content"] for r in replies]
    assert texts[1] == texts[5], "greedy output of one adapter does not depend on its batch"
    assert len(set(texts[:5])) == 5, "every adapter changes the base model's output its own way"
    alone = chat(adapters, OWNER, adapters.mine[0]).json()["choices"][0]["message"]["content"]
    assert alone == texts[1]


@pytest.mark.parametrize(("method", "path", "body"), [
    ("POST", "/chat/completions", {"messages": QUESTION}),
    ("POST", "/completions", {"prompt": "Hello"}),
    ("POST", "/classifications", {"input": ["Great!"], "labels": ["good", "bad"]}),
    ("POST", "/embeddings", {"input": "Great!"}),
    ("POST", "/tokenize", {"text": "Great!"}),
    ("POST", "/detokenize", {"tokens": [1, 2]}),
    ("POST", "/evaluations", {"file": "file-0123456789abcdef01234567"}),
    ("POST", "/fine_tuning/jobs", {"training_file": "file-0123456789abcdef01234567"}),
    ("GET", "/models/{model}", None),
    ("DELETE", "/models/{model}", None),
])
def test_another_keys_adapter_is_404_on_every_route(adapters: SimpleNamespace, method: str, path: str,
                                                    body: dict | None) -> None:
    model = adapters.mine[0]
    reply = call(adapters, OTHER, method, path.format(model=model), None if body is None else {"model": model, **body})
    assert reply.status_code == 404, reply.text
    error = reply.json()["error"]
    assert error["code"] == "model_not_found"
    unknown = model + "x"
    again = call(adapters, OTHER, method, path.format(model=unknown), None if body is None else {"model": unknown, **body})
    assert again.json()["error"] == {**error, "message": error["message"].replace(model, unknown)}, \
        "another key's adapter reads exactly like an unknown model"


def test_a_corrupt_adapter_fails_its_model_only(adapters: SimpleNamespace) -> None:
    for _ in range(2):  # when first read, and once known to be unusable
        reply = chat(adapters, OWNER, adapters.broken)
        assert reply.status_code == 409, reply.text
        error = reply.json()["error"]
        assert (error["param"], error["code"]) == ("model", "model_unusable")
        assert "/" not in error["message"].replace(adapters.broken, ""), "no server path in the error"
    assert chat(adapters, OWNER, adapters.mine[1]).status_code == 200
    assert chat(adapters, OTHER, GENERATOR).status_code == 200


def test_engine_features_work_on_adapter_rows(adapters: SimpleNamespace) -> None:
    model = adapters.mine[1]
    with MaaS(api_key=OWNER, base_url=adapters.server.base_url, timeout=120) as client:
        plain = client.chat(QUESTION, model=model, max_tokens=16, temperature=0)
        with client.chat(QUESTION, model=model, max_tokens=16, temperature=0, stream=True) as stream:
            streamed = "".join(stream.text_stream)
        assert streamed == plain.text
    reply = chat(adapters, OWNER, model, n=2, logprobs=True, top_logprobs=2, temperature=1, seed=3)
    assert reply.status_code == 200, reply.text
    choices = reply.json()["choices"]
    assert len(choices) == 2 and all(c["logprobs"]["content"] for c in choices)
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"],
              "additionalProperties": False}
    structured = chat(adapters, OWNER, model, max_tokens=40,
                      response_format={"type": "json_schema", "json_schema": {"name": "c", "schema": schema}})
    assert structured.status_code == 200, structured.text
    assert set(json.loads(structured.json()["choices"][0]["message"]["content"])) == {"city"}


def test_metrics_count_adapters_and_name_no_tenant_model(adapters: SimpleNamespace) -> None:
    text = httpx.get(f"{adapters.server.url}/metrics", timeout=30).text
    assert "ft:" not in text and ":m0:" not in text
    resident = [line for line in text.splitlines() if line.startswith("maas_lora_adapters_resident{")]
    assert resident and float(resident[0].split()[-1]) <= 2
    loads = next(line for line in text.splitlines() if line.startswith("maas_lora_adapter_loads{"))
    assert float(loads.split()[-1]) >= 3
    assert "maas_lora_adapter_evictions{" in text and "maas_lora_adapter_load_seconds_count{" in text


def test_the_owner_deletes_its_adapter(adapters: SimpleNamespace) -> None:
    model = adapters.mine[0]
    assert call(adapters, OTHER, "DELETE", f"/models/{model}").status_code == 404
    assert call(adapters, OWNER, "DELETE", f"/models/{model}").status_code == 200
    assert chat(adapters, OWNER, model).status_code == 404
    assert call(adapters, OWNER, "DELETE", "/models/pirate").status_code == 403
    assert chat(adapters, OWNER, adapters.mine[1]).status_code == 200


def test_a_job_asking_for_too_large_a_rank_is_a_400(adapters: SimpleNamespace) -> None:
    with MaaS(api_key=OWNER, base_url=adapters.server.base_url, timeout=120) as client:
        data = client.files.upload(Path(__file__).resolve().parents[1] / "data" / "pirate_chat_train.jsonl")
    reply = call(adapters, OWNER, "POST", "/fine_tuning/jobs", {
        "model": GENERATOR, "training_file": data.id, "method": {"type": "lora", "lora": {"r": 128}}})
    assert reply.status_code == 400, reply.text
    error = reply.json()["error"]
    assert (error["param"], error["code"]) == ("method.lora.r", "lora_rank_too_large")
    assert "MAAS_MAX_LORA_RANK" in error["message"]


def test_zero_shot_classification_runs_through_the_adapter(adapters: SimpleNamespace) -> None:
    body = {"input": ["The food was wonderful."], "labels": ["positive", "negative"]}
    scores = {model: call(adapters, OWNER, "POST", "/classifications", {"model": model, **body}).json()
              for model in (GENERATOR, adapters.mine[1])}
    assert all("data" in reply for reply in scores.values()), scores
    base, tuned = (scores[m]["data"][0]["scores"] for m in (GENERATOR, adapters.mine[1]))
    assert base != tuned, "the adapter changes the model's likelihoods"
