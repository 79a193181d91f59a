"""Fine-tuned classifiers kept as LoRA adapters plus heads, through the session's server: a
classifier job trains LoRA by default and its held-out accuracy stays within 0.02 of the same
job fine-tuning every weight (`method: full`); the LoRA classifier runs on the base encoder's
batcher (its folder holds an adapter and a head, not a copy of the encoder), and is another
key's 404 on every route that takes a model."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from maas_sdk import MaaS
from reference_server.storage import DataLayout
from reference_server.testing import ServerProcess
from tests.constants import EMBEDDER, TEAM_KEYS

pytestmark = pytest.mark.slow

DATA = Path(__file__).resolve().parents[1] / "data"
OTHER_KEY = TEAM_KEYS[0]


def heldout_accuracy(client: MaaS, model: str) -> float:
    rows = [json.loads(line) for line in (DATA / "sentiment_heldout.jsonl").read_text().splitlines() if line.strip()]
    labels = client.classify([r["text"] for r in rows], model=model).labels
    return sum(label == r["label"] for label, r in zip(labels, rows)) / len(rows)


def train(client: MaaS, method: dict[str, Any] | None) -> tuple[Any, float]:
    train_file = client.files.upload(DATA / "sentiment_train.jsonl")
    valid = client.files.upload(DATA / "sentiment_validation.jsonl")
    started = time.monotonic()
    job = client.fine_tuning.jobs.create(model=EMBEDDER, training_file=train_file.id, validation_file=valid.id,
                                         seed=42, hyperparameters={"n_epochs": 2},
                                         **({"method": method} if method else {}))  # type: ignore[arg-type]
    return job.wait(poll_interval=0.5, timeout=900), time.monotonic() - started


def test_a_lora_classifier_is_as_accurate_as_a_full_fine_tune_for_the_cost_of_its_adapter(
        server: ServerProcess, client: MaaS) -> None:
    lora, lora_seconds = train(client, None)
    full, full_seconds = train(client, {"type": "full"})
    assert (lora.status, full.status) == ("succeeded", "succeeded")
    assert lora.method == {"type": "lora", "lora": {"r": 8, "alpha": 16, "dropout": 0.0}}
    assert full.method == {"type": "full"}
    lora_accuracy = heldout_accuracy(client, lora.fine_tuned_model)
    full_accuracy = heldout_accuracy(client, full.fine_tuned_model)
    print(f"\nheld-out accuracy: LoRA {lora_accuracy:.4f} (trained in {lora_seconds:.0f} s), "
          f"full fine-tune {full_accuracy:.4f} (trained in {full_seconds:.0f} s)")
    assert lora_accuracy >= full_accuracy - 0.02
    assert lora_accuracy >= 0.9

    # What each costs on disk: an adapter and a head, against a whole encoder.
    layout = DataLayout(Path(server.env["MAAS_DATA_DIR"]))
    sizes = {job.id: sum(f.stat().st_size for f in layout.model_dir(job.id).rglob("*") if f.is_file())
             for job in (lora, full)}
    assert (layout.model_dir(lora.id) / "adapter_model.safetensors").is_file()
    assert sizes[lora.id] * 20 < sizes[full.id]

    # Another key sees nothing of it, on every route that takes a model.
    with httpx.Client(base_url=server.url, headers={"authorization": f"Bearer {OTHER_KEY}"}, timeout=60) as other:
        model = lora.fine_tuned_model
        for path, body in (("/v1/classifications", {"model": model, "input": ["Great."]}),
                           ("/v1/rerank", {"model": model, "query": "q", "documents": ["d"]}),
                           ("/score", {"model": model, "text_1": "q", "text_2": "d"})):
            answer = other.post(path, json=body)
            assert answer.status_code == 404, (path, answer.text)
        assert other.get(f"/v1/models/{model}").status_code == 404
        assert model not in {m["id"] for m in other.get("/v1/models").json()["data"]}
