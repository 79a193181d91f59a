"""lm-evaluation-harness against the real server, offline, as its users run it: the
`local-completions` model with its defaults (token-id requests, `tokenizer_backend=auto`, which
finds our vLLM-style `/tokenizer_info` and tokenizes through `/tokenize`), on a multiple-choice
task (echo logprobs) and a `generate_until` task, and `local-chat-completions` on a generation
task. The tasks are local JSONL files with task YAML in tests/data/lm_eval; nothing is downloaded."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from reference_server.testing import ServerProcess
from tests.constants import API_KEY, GENERATOR

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
TASKS = ROOT / "tests" / "data" / "lm_eval"


@pytest.fixture
def offline_lm_eval(monkeypatch: pytest.MonkeyPatch) -> Any:
    """lm_eval, set up to read the local tasks (their data paths are relative to the repository
    root) and to call our server with our key, with every download switched off."""
    for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.setenv(name, "1")
    monkeypatch.setenv("OPENAI_API_KEY", API_KEY)
    monkeypatch.chdir(ROOT)
    import lm_eval
    from lm_eval.tasks import TaskManager

    def run(model: str, model_args: dict[str, Any], task: str, **kwargs: Any) -> dict[str, Any]:
        result = lm_eval.simple_evaluate(model=model, model_args=model_args, tasks=[task],
                                         task_manager=TaskManager(include_path=str(TASKS)),
                                         log_samples=True, bootstrap_iters=0, **kwargs)
        assert result is not None
        return result

    return run


def _post(server: ServerProcess, path: str, body: dict[str, Any]) -> dict[str, Any]:
    r = httpx.post(f"{server.url}{path}", json=body, timeout=120, headers={"authorization": f"Bearer {API_KEY}"})
    assert r.status_code == 200, r.text
    return dict(r.json())


def _our_loglikelihood(server: ServerProcess, context: str, continuation: str) -> float:
    """log p(continuation | context), from our echo logprobs of the joined text (the continuation's
    tokens are those past the context's, as lm-eval splits them)."""
    whole = _post(server, "/tokenize", {"prompt": context + continuation, "add_special_tokens": False})["tokens"]
    n_context = len(_post(server, "/tokenize", {"prompt": context, "add_special_tokens": False})["tokens"])
    scored = _post(server, "/v1/completions", {"model": GENERATOR, "prompt": whole, "max_tokens": 0, "echo": True,
                                               "logprobs": 0})
    return float(sum(scored["choices"][0]["logprobs"]["token_logprobs"][n_context:]))


def _completions_args(server: ServerProcess) -> dict[str, Any]:
    return {"model": GENERATOR, "base_url": f"{server.base_url}/completions", "auth_token": API_KEY,
            "max_length": 2048, "max_retries": 1}


def test_multiple_choice_accuracy_matches_our_own_scoring(server: ServerProcess, offline_lm_eval: Any) -> None:
    import json

    result = offline_lm_eval("local-completions", _completions_args(server), "maas_capitals_mc")
    samples = result["samples"]["maas_capitals_mc"]
    rows = [json.loads(line) for line in (TASKS / "capitals_mc.jsonl").read_text().splitlines()]
    assert len(samples) == len(rows)
    hits = 0
    for sample in sorted(samples, key=lambda s: s["doc_id"]):
        row = rows[sample["doc_id"]]
        ours = [_our_loglikelihood(server, row["question"], choice) for choice in row["choices"]]
        theirs = [float(resp[0][0]) for resp in sample["resps"]]
        assert theirs == pytest.approx(ours, abs=1e-3)
        hits += max(range(len(ours)), key=ours.__getitem__) == row["answer"]
        assert sample["acc"] == float(max(range(len(ours)), key=ours.__getitem__) == row["answer"])
    assert result["results"]["maas_capitals_mc"]["acc,none"] == pytest.approx(hits / len(rows))
    # " Paris" is the greedy continuation of "The capital of France is": lm-eval must see it so.
    paris = next(s for s in samples if s["doc_id"] == 0)
    assert paris["resps"][0][0][1] is True
    assert paris["resps"][2][0][1] is False  # " Madrid" is not what the model would say


def test_generate_until_through_completions_with_token_ids(server: ServerProcess, offline_lm_eval: Any) -> None:
    result = offline_lm_eval("local-completions", _completions_args(server), "maas_capitals_gen")
    samples = result["samples"]["maas_capitals_gen"]
    assert len(samples) == 3
    for sample in samples:
        generated = sample["resps"][0][0]
        prompt = sample["arguments"][0][0]
        ours = _post(server, "/v1/completions", {"model": GENERATOR, "prompt": prompt, "max_tokens": 6,
                                                 "temperature": 0, "stop": ["\n", ".", ",", "<|im_end|>"]})
        assert generated == ours["choices"][0]["text"]
    assert 0.0 <= result["results"]["maas_capitals_gen"]["exact_match,none"] <= 1.0


def test_chat_generation_task(server: ServerProcess, offline_lm_eval: Any) -> None:
    args = {"model": GENERATOR, "base_url": f"{server.base_url}/chat/completions", "max_retries": 1}
    result = offline_lm_eval("local-chat-completions", args, "maas_capitals_chat", apply_chat_template=True)
    samples = result["samples"]["maas_capitals_chat"]
    assert len(samples) == 3
    for sample in samples:
        question = sample["doc"]["question"] + " Answer with the city name only."
        ours = _post(server, "/v1/chat/completions", {
            "model": GENERATOR, "messages": [{"role": "user", "content": question}], "max_tokens": 8,
            "temperature": 0, "stop": ["\n"]})
        assert sample["resps"][0][0] == ours["choices"][0]["message"]["content"]
    # A 135M model still knows this one (it answers in a sentence, so exact_match stays low).
    france = next(s for s in samples if s["doc"]["answer"] == "Paris")
    assert "Paris" in france["resps"][0][0]
    assert "exact_match,none" in result["results"]["maas_capitals_chat"]
