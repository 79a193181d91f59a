"""The documentation runs: every Python block and every `$ ` command of docs/ and README.md,
against the session's server, and the docs site builds strictly.

Blocks fenced as ```python run, in order; each document's blocks share one namespace, as a
reader would run them. In ```console blocks, each line starting with `$ ` is a command that
runs in bash from the repository root (with this environment's `maas` and `python` first on
PATH) and must succeed. ```shell / ```bash blocks show commands that are not run (they start
servers, install things or run for minutes).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import maas_sdk
from reference_server.testing import ServerProcess
from tests.constants import API_KEY

ROOT = Path(__file__).resolve().parents[2]
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.DOTALL | re.MULTILINE)
DOCUMENTS = sorted(ROOT.glob("docs/**/*.md")) + [ROOT / "README.md"]
ALLOWED = {"python", "shell", "bash", "text", "console", ""}


def blocks(path: Path, language: str) -> list[str]:
    found = []
    for lang, body in FENCE.findall(path.read_text()):
        assert lang in ALLOWED, f"{path.name}: unexpected fence language {lang!r}"
        assert lang != "", f"{path.name}: every code block must say its language"
        if lang == language:
            found.append(body)
    return found


def python_blocks(path: Path) -> list[str]:
    return blocks(path, "python")


def console_commands(path: Path) -> list[str]:
    return [line[2:] for body in blocks(path, "console") for line in body.splitlines() if line.startswith("$ ")]


def name(path: Path) -> str:
    return str(path.relative_to(ROOT))


def test_every_document_has_code() -> None:
    assert any(python_blocks(doc) for doc in DOCUMENTS)
    assert any(console_commands(doc) for doc in DOCUMENTS)


@pytest.mark.slow
@pytest.mark.parametrize("doc", DOCUMENTS, ids=name)
def test_document_examples_run(doc: Path, server: ServerProcess, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAAS_BASE_URL", server.base_url)
    monkeypatch.setenv("MAAS_API_KEY", API_KEY)
    monkeypatch.chdir(ROOT)
    namespace: dict = {"__name__": "__docs__"}
    for index, block in enumerate(python_blocks(doc)):
        code = compile(block, f"{doc.name}[block {index}]", "exec")
        exec(code, namespace)  # noqa: S102 - running our own documentation is the point


@pytest.mark.slow
@pytest.mark.parametrize("doc", [doc for doc in DOCUMENTS if console_commands(doc)], ids=name)
def test_document_commands_run(doc: Path, server: ServerProcess) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("MAAS_")}
    env.update(MAAS_BASE_URL=server.base_url, MAAS_API_KEY=API_KEY,
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}")
    for command in console_commands(doc):
        result = subprocess.run(["bash", "-o", "pipefail", "-c", command], cwd=ROOT, env=env, capture_output=True,
                                text=True, timeout=600, check=False)
        assert result.returncode == 0, f"{name(doc)}: `{command}` exited {result.returncode}:\n{result.stderr}"


@pytest.mark.slow
def test_site_builds_strictly(tmp_path: Path) -> None:
    """`mkdocs build --strict`: a broken link or anchor, or a page left out of the nav, fails."""
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
                            cwd=ROOT, capture_output=True, text=True, timeout=600, check=False,
                            env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert result.returncode == 0, result.stderr
    assert f"maas {maas_sdk.__version__}" in (tmp_path / "index.html").read_text(), "versioned with the package"
    for page in ("index.html", "cli/index.html", "playground/index.html", "guides/streaming/index.html",
                 "server/settings/index.html", "api/clients/index.html"):
        assert (tmp_path / page).is_file(), page
    settings = (tmp_path / "server/settings/index.html").read_text()
    assert "MAAS_PLAYGROUND" in settings and "generated:" not in settings
    reference = (tmp_path / "api/clients/index.html").read_text()
    assert "on connection errors, timeouts, 408" in reference, "the SDK's docstrings are on the page"


@pytest.mark.parametrize(("kind", "results"), [("serving", "serving.json"), ("fine-tune", "fine-tune.json")])
def test_plots_are_drawn_from_the_recorded_runs(kind: str, results: str, tmp_path: Path) -> None:
    """The docs' plots come from results files of real runs, kept in bench/results/."""
    recorded = ROOT / "bench" / "results" / results
    assert recorded.is_file(), f"{recorded} is missing: make plots"
    out = tmp_path / "plot.png"
    subprocess.run([sys.executable, "-m", "bench.plots", kind, str(recorded), str(out)], cwd=ROOT, check=True,
                   timeout=120)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 20_000
