"""Batches survive their server: `kill -9` and SIGTERM part-way through, a restart on the same
data directory resumes them, and the output holds every line exactly once. A window that ends
first (`MAAS_BATCH_WINDOW_HOURS`) ends the batch `expired` with what finished. Batches are per
API key (another key's is a 404) and lines run with the key's model allowlist. Servers of their
own, with the default generator only."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import openai
import pytest

from maas_sdk import MaaS
from reference_server.testing import ServerProcess
from tests.constants import GENERATOR

pytestmark = pytest.mark.slow

ALICE, BOB = "sk-batch-alice-0001", "sk-batch-bob-0002"


def env_for(workdir: Path, **extra: str) -> dict[str, str]:
    keys = workdir / "keys.txt"
    keys.write_text(f"{ALICE}\n{BOB} all-minilm-*\n")
    return {"MAAS_API_KEYS_FILE": str(keys), "MAAS_ENABLED_MODELS": GENERATOR, "MAAS_THREADS": "1",
            "MAAS_DTYPE": "float32", "MAAS_DATA_DIR": str(workdir / "data"), "MAAS_BATCH_LEASE_SECONDS": "1",
            "MAAS_MAX_RUNNING": "4", **extra}


def jsonl(lines: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(line) + "\n" for line in lines).encode()


def chat_lines(n: int, max_tokens: int) -> list[dict[str, Any]]:
    return [{"custom_id": f"req-{i}", "method": "POST", "url": "/v1/chat/completions",
             "body": {"model": GENERATOR, "messages": [{"role": "user", "content": f"Count to {i}."}],
                      "max_tokens": max_tokens, "temperature": 0}} for i in range(n)]


def client(server: ServerProcess, key: str = ALICE) -> openai.OpenAI:
    return openai.OpenAI(api_key=key, base_url=server.base_url, max_retries=0, timeout=60)


def until(oai: openai.OpenAI, batch_id: str, done: Any, timeout: float = 120) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        batch = oai.batches.retrieve(batch_id)
        if done(batch):
            return batch
        time.sleep(0.2)
    raise TimeoutError(f"batch {batch_id} is still {batch.status}")


def lines_of(oai: openai.OpenAI, file_id: str | None) -> list[dict[str, Any]]:
    return [json.loads(line) for line in oai.files.content(file_id).text.splitlines()] if file_id else []


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("batch-durability")


def start_batch(server: ServerProcess, lines: int) -> str:
    oai = client(server)
    upload = oai.files.create(file=("many.jsonl", jsonl(chat_lines(lines, 8))), purpose="batch")
    batch = oai.batches.create(input_file_id=upload.id, endpoint="/v1/chat/completions", completion_window="24h")
    part = until(oai, batch.id, lambda b: b.request_counts.completed >= 2)
    assert part.status == "in_progress"
    return batch.id


def check_resumed(server: ServerProcess, batch_id: str, lines: int) -> None:
    oai = client(server)
    resumed = oai.batches.retrieve(batch_id)
    assert resumed.request_counts is not None and resumed.request_counts.completed >= 2, "recorded lines stay"
    done = until(oai, batch_id, lambda b: b.status in ("completed", "failed", "expired", "cancelled"))
    assert done.status == "completed", done
    assert (done.request_counts.completed, done.request_counts.failed) == (lines, 0)
    output = lines_of(oai, done.output_file_id)
    assert [line["custom_id"] for line in output] == [f"req-{i}" for i in range(lines)], "each line once, in order"
    assert len({line["id"] for line in output}) == lines
    assert done.error_file_id is None


def test_a_batch_resumes_after_kill_9_and_after_sigterm(workdir: Path) -> None:
    env = env_for(workdir)
    log = workdir / "server.log"
    with ServerProcess(env=env, log_path=log) as first:
        killed = start_batch(first, 12)
        first.kill()
    with ServerProcess(env=env, log_path=log) as second:
        check_resumed(second, killed, 12)
        stopped = start_batch(second, 12)
        second.stop()  # SIGTERM: a clean shutdown
    with ServerProcess(env=env, log_path=log) as third:
        check_resumed(third, stopped, 12)


def test_an_expired_window_keeps_what_finished(workdir: Path) -> None:
    # A window of 12 s: two rows at a time cannot finish the batch in it.
    with ServerProcess(env=env_for(workdir, MAAS_BATCH_WINDOW_HOURS=str(12 / 3600), MAAS_MAX_RUNNING="2"),
                       log_path=workdir / "expiry.log") as server:
        oai = client(server)
        upload = oai.files.create(file=("slow.jsonl", jsonl(chat_lines(60, 64))), purpose="batch")
        batch = oai.batches.create(input_file_id=upload.id, endpoint="/v1/chat/completions", completion_window="24h")
        assert batch.expires_at is not None and batch.expires_at - batch.created_at == 12
        done = until(oai, batch.id, lambda b: b.status not in ("validating", "in_progress"), timeout=60)
        assert done.status == "expired" and done.expired_at is not None, done
        finished = lines_of(oai, done.output_file_id)
        assert len(finished) == done.request_counts.completed < 60
        errors = lines_of(oai, done.error_file_id)
        assert all(e["error"]["code"] == "batch_expired" and e["response"] is None for e in errors)
        order = [int(line["custom_id"].split("-")[1]) for line in finished + errors]
        assert sorted(order) == list(range(60)), "every line is in one of the two files"
        assert [int(e["custom_id"].split("-")[1]) for e in errors] == sorted(int(e["custom_id"].split("-")[1])
                                                                             for e in errors)

        # The lines that ran count in Alice's usage, as her own requests would.
        with MaaS(api_key=ALICE, base_url=server.base_url) as alice:
            deadline = time.monotonic() + 15
            while True:
                buckets = alice.usage(start_time=done.created_at - 60, group_by=["kind"]).data
                used = [r for b in buckets for r in b.results if r.kind == "completions"]
                if (sum(r.requests for r in used) >= done.request_counts.completed
                        and sum(r.completion_tokens for r in used) >= done.usage.output_tokens) \
                        or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
        assert sum(r.requests for r in used) >= done.request_counts.completed > 0
        assert sum(r.completion_tokens for r in used) >= done.usage.output_tokens > 0

        # Per API key: Bob sees none of Alice's batches or results.
        bob = client(server, BOB)
        for call in (lambda: bob.batches.retrieve(batch.id), lambda: bob.batches.cancel(batch.id),
                     lambda: bob.files.content(done.output_file_id)):
            with pytest.raises(openai.NotFoundError):
                call()
        assert batch.id not in [b.id for b in bob.batches.list().data]
        with pytest.raises(openai.BadRequestError) as caught:
            bob.batches.create(input_file_id=upload.id, endpoint="/v1/chat/completions", completion_window="24h")
        assert isinstance(caught.value.body, dict) and caught.value.body["param"] == "input_file_id"

        # A line runs with its key's model allowlist: Bob may not use the generator.
        mine = bob.files.create(file=("one.jsonl", jsonl(chat_lines(1, 4))), purpose="batch")
        refused = until(bob, bob.batches.create(input_file_id=mine.id, endpoint="/v1/chat/completions",
                                                completion_window="24h").id,
                        lambda b: b.status in ("completed", "failed", "expired", "cancelled"), timeout=30)
        [line] = lines_of(bob, refused.error_file_id)
        assert line["response"]["status_code"] == 403
        assert line["response"]["body"]["error"]["code"] == "model_not_allowed"
