"""bench/gpu_check.sh runs only where a GPU is lent, so its dry run runs here: every path, test
selection and flag the GPU check uses must still exist, or this fails on any machine."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "bench" / "gpu_check.sh"
# About 30 s on two busy cores (three test collections, the benchmark module imported twice).
pytestmark = pytest.mark.slow


def _dry_run(script: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHON": sys.executable, "PYTHONPATH": str(ROOT)}
    return subprocess.run(["bash", str(script), "--dry-run"], capture_output=True, text=True, env=env,
                          timeout=300, check=False)


def test_gpu_check_dry_run_finds_every_path_selection_and_flag() -> None:
    run = _dry_run(SCRIPT)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "every path, test selection and flag checked" in run.stdout
    # Each selection collected tests; half precision leaves the exact cross-batch comparisons out.
    assert "float32 tests: " in run.stdout and "deselected" in run.stdout
    assert run.stdout.count("would run short, mixed, long-prompt") == 2


def test_gpu_check_dry_run_fails_on_a_stale_tree(tmp_path: Path) -> None:
    """The same script in a tree without the engine tests and the benchmark: it names what is gone."""
    (tmp_path / "bench").mkdir()
    shutil.copy(SCRIPT, tmp_path / "bench" / "gpu_check.sh")
    run = _dry_run(tmp_path / "bench" / "gpu_check.sh")
    assert run.returncode == 1
    assert "tests/server/inference/engine does not exist" in run.stderr
    assert "the float32 selection collects no tests" in run.stderr
    assert "problem(s)" in run.stderr
