"""The server's layering holds: the import contracts in pyproject.toml (`lint-imports`), a top
level of a handful of modules, and no service reached around the typed state."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SERVER = ROOT / "reference_server"


def test_import_contracts_are_kept() -> None:
    lint = Path(sys.executable).parent / "lint-imports"
    result = subprocess.run([str(lint), "--no-cache"], check=False, cwd=ROOT, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_the_top_level_is_a_handful_of_modules() -> None:
    modules = sorted(p.name for p in SERVER.glob("*.py") if p.name not in ("__init__.py", "__main__.py"))
    assert len(modules) <= 8, modules
    layers = {p.name for p in SERVER.iterdir() if (p / "__init__.py").is_file()}
    assert {"http", "inference", "datasets", "training", "storage"} <= layers


def test_app_state_is_reached_only_through_the_typed_accessor() -> None:
    untyped = re.compile(r"\.app\.state\.|app\.state\.(?!maas\b)")
    offenders = [
        f"{path.relative_to(ROOT)}:{number}"
        for path in SERVER.rglob("*.py")
        if path.name not in ("state.py", "app.py")
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if untyped.search(line)
    ]
    assert offenders == []


def test_test_modules_have_unique_names() -> None:
    """pytest imports a test folder without `__init__.py` by its basename: two test files of one name
    in different folders stop the whole run at collection."""
    names = [path.name for path in (ROOT / "tests").rglob("test_*.py")]
    assert sorted({name for name in names if names.count(name) > 1}) == []
