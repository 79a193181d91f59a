"""Fine-tuning through the official openai client in OpenAI's current form
(`method: {"type": "supervised", "supervised": {"hyperparameters": ...}}`), and deleting the
fine-tuned model with `client.models.delete` (its files too); base models and other keys'
models cannot be deleted. Its own server, with two keys (one per principal)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from reference_server.testing import ServerProcess
from tests.constants import GENERATOR

pytestmark = pytest.mark.slow

DATA = Path(__file__).resolve().parents[1] / "data"
ALICE, BOB = "sk-alice-0123456789", "sk-bob-0123456789"


@pytest.fixture(scope="module")
def two_keys(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, Path]]:
    workdir = tmp_path_factory.mktemp("ft-openai")
    env = {"MAAS_API_KEYS": f"{ALICE},{BOB}", "MAAS_ENABLED_MODELS": GENERATOR, "MAAS_THREADS": "1",
           "MAAS_DATA_DIR": str(workdir / "data")}
    with ServerProcess(env=env, log_path=workdir / "server.log") as proc:
        yield proc, workdir / "data"


def test_supervised_method_then_delete_the_model(two_keys: tuple[ServerProcess, Path]) -> None:
    server, data_dir = two_keys
    alice = openai.OpenAI(api_key=ALICE, base_url=server.base_url, max_retries=0)
    bob = openai.OpenAI(api_key=BOB, base_url=server.base_url, max_retries=0)
    train = alice.files.create(file=(DATA / "pirate_chat_train.jsonl").open("rb"), purpose="fine-tune")
    method = {"type": "supervised", "supervised": {
        "hyperparameters": {"n_epochs": 1, "batch_size": 4, "learning_rate_multiplier": "auto", "max_steps": 2},
        "training": "lora", "lora": {"r": 4, "alpha": 8}}}
    job = alice.fine_tuning.jobs.create(model=GENERATOR, training_file=train.id, method=method,  # type: ignore[arg-type]
                                        suffix="sup", metadata={"team": "a"})
    assert job.method is not None and job.method.type == "lora"  # type: ignore[comparison-overlap]
    assert job.hyperparameters.n_epochs == 1 and job.hyperparameters.batch_size == 4
    for _ in range(600):
        job = alice.fine_tuning.jobs.retrieve(job.id)
        if job.status in ("succeeded", "failed", "cancelled"):
            break
        time.sleep(0.5)
    assert job.status == "succeeded", job.error
    name = job.fine_tuned_model
    assert name is not None and alice.models.retrieve(name).id == name
    folder = data_dir / "models" / job.id
    assert folder.is_dir()

    with pytest.raises(openai.NotFoundError):
        bob.models.delete(name)  # not Bob's
    with pytest.raises(openai.PermissionDeniedError):
        alice.models.delete(GENERATOR)  # a base model
    deleted = alice.models.delete(name)
    assert (deleted.id, deleted.deleted) == (name, True)
    assert not folder.exists()
    with pytest.raises(openai.NotFoundError):
        alice.models.retrieve(name)
    with pytest.raises(openai.NotFoundError):
        alice.models.delete(name)
    events = [e.message for e in alice.fine_tuning.jobs.list_events(job.id)]
    assert any("deleted" in m for m in events)


def test_dpo_and_mixed_forms_are_refused(two_keys: tuple[ServerProcess, Path]) -> None:
    server, _ = two_keys
    alice = openai.OpenAI(api_key=ALICE, base_url=server.base_url, max_retries=0)
    train = alice.files.create(file=(DATA / "pirate_chat_train.jsonl").open("rb"), purpose="fine-tune")
    with pytest.raises(openai.BadRequestError) as dpo:
        alice.fine_tuning.jobs.create(model=GENERATOR, training_file=train.id,
                                      method={"type": "dpo", "dpo": {"hyperparameters": {"beta": 0.1}}})
    assert dpo.value.body["param"] == "method.type"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError) as both:
        alice.fine_tuning.jobs.create(model=GENERATOR, training_file=train.id, hyperparameters={"n_epochs": 1},
                                      method={"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 2}}})
    assert both.value.body["param"] == "hyperparameters"  # type: ignore[index]
