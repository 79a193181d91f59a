"""Every Python code block in docs/ and README.md runs, in order, against the session's server.

Blocks fenced as ```python run; blocks fenced as ```shell / ```bash are shell snippets and
are not run. Each document's blocks share one namespace, as a reader would run them.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from reference_server.testing import ServerProcess
from tests.constants import API_KEY

ROOT = Path(__file__).resolve().parents[2]
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.DOTALL | re.MULTILINE)
DOCUMENTS = sorted(ROOT.glob("docs/*.md")) + [ROOT / "README.md"]
ALLOWED = {"python", "shell", "bash", "text", "console", ""}


def python_blocks(path: Path) -> list[str]:
    blocks = []
    for lang, body in FENCE.findall(path.read_text()):
        assert lang in ALLOWED, f"{path.name}: unexpected fence language {lang!r}"
        assert lang != "", f"{path.name}: every code block must say its language"
        if lang == "python":
            blocks.append(body)
    return blocks


def test_every_document_has_code() -> None:
    assert any(python_blocks(doc) for doc in DOCUMENTS)


@pytest.mark.slow
@pytest.mark.parametrize("doc", DOCUMENTS, ids=lambda p: p.name)
def test_document_examples_run(doc: Path, server: ServerProcess, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAAS_BASE_URL", server.base_url)
    monkeypatch.setenv("MAAS_API_KEY", API_KEY)
    monkeypatch.chdir(ROOT)
    namespace: dict = {"__name__": "__docs__"}
    for index, block in enumerate(python_blocks(doc)):
        code = compile(block, f"{doc.name}[block {index}]", "exec")
        exec(code, namespace)  # noqa: S102 - running our own documentation is the point
