"""The latest openai 3.x client and the OpenAI Agents SDK against the real server, each in the
environment `make install` makes for them (`.venv-openai3`: they cannot share the project's,
where langchain pins openai 2.x). The checks themselves are in `openai3_checks.py`, run with that
environment's interpreter; a missing environment fails these tests rather than skipping them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from reference_server.testing import ServerProcess
from tests.constants import API_KEY, GENERATOR

# A second client environment in subprocesses: make test runs it, make test-fast does not.
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
PYTHON = ROOT / ".venv-openai3" / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")
CHECKS = Path(__file__).with_name("openai3_checks.py")


def run_checks(server: ServerProcess, scenario: str) -> dict[str, object]:
    if not PYTHON.exists():
        pytest.fail(f"{PYTHON} is missing: `make install` creates it (requirements-openai3.txt)")
    env = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", ""),
           "OPENAI_BASE_URL": server.base_url, "OPENAI_API_KEY": API_KEY, "MAAS_TEST_MODEL": GENERATOR}
    done = subprocess.run([str(PYTHON), str(CHECKS), scenario], capture_output=True, text=True, timeout=600,
                          env=env, cwd=CHECKS.parent, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["scenario"] == scenario
    return result


def test_openai_3_on_the_responses_api(server: ServerProcess) -> None:
    result = run_checks(server, "responses")
    assert str(result["openai"]).startswith("3.")


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["responses", "chat"])
def test_an_agent_calls_its_tool_and_answers(server: ServerProcess, kind: str) -> None:
    result = run_checks(server, f"agents-{kind}")
    assert result["calls"] and result["answer"]
