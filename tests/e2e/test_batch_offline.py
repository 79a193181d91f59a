"""`python -m reference_server.batch`: a batch file run with no server, on the models the settings
name, as vLLM's run_batch runs one; the answers are the server's (greedy decoding), in input order."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from maas_sdk import MaaS
from tests.constants import GENERATOR

pytestmark = pytest.mark.slow


def run(tmp_path: Path, source: Path, target: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MAAS_ENABLED_MODELS": GENERATOR, "MAAS_THREADS": "1", "MAAS_DTYPE": "float32",
           "MAAS_DATA_DIR": str(tmp_path / "data"), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "reference_server.batch", "-i", str(source), "-o", str(target)],
                          env=env, capture_output=True, text=True, timeout=600, check=False)


def test_offline_run_matches_the_server(tmp_path: Path, client: MaaS) -> None:
    questions = ["Name a fruit.", "Name a city."]
    lines = [{"custom_id": f"q{i}", "method": "POST", "url": "/v1/chat/completions",
              "body": {"model": GENERATOR, "messages": [{"role": "user", "content": q}], "max_tokens": 6,
                       "temperature": 0}} for i, q in enumerate(questions)]
    unknown = {"model": "no-such-model", "messages": [{"role": "user", "content": "hi"}]}
    lines.append({**lines[0], "custom_id": "bad", "body": unknown})
    source, target = tmp_path / "requests.jsonl", tmp_path / "results.jsonl"
    source.write_text("".join(json.dumps(line) + "\n" for line in lines))
    done = run(tmp_path, source, target)
    assert done.returncode == 0, done.stderr
    assert "3/3" in done.stderr, "the progress bar"
    results = [json.loads(line) for line in target.read_text().splitlines()]
    assert [r["custom_id"] for r in results] == ["q0", "q1", "bad"]
    assert results[2]["response"]["status_code"] == 404
    for result, question in zip(results, questions):
        online = client.chat([{"role": "user", "content": question}], model=GENERATOR, max_tokens=6, temperature=0)
        assert result["response"]["body"]["choices"][0]["message"]["content"] == online.text


def test_a_bad_file_is_refused_naming_the_line(tmp_path: Path) -> None:
    source = tmp_path / "bad.jsonl"
    source.write_text('{"custom_id": "a", "method": "POST", "url": "/v1/chat/completions", "body": {}}\n{oops}\n')
    done = run(tmp_path, source, tmp_path / "out.jsonl")
    assert done.returncode == 2 and "line 2:" in done.stderr
    assert not (tmp_path / "out.jsonl").exists()
