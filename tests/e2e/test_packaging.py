"""The package as users install it: a wheel built from this tree, installed into a fresh virtualenv.

A plain `pip install maas-sdk` is a working SDK with its three dependencies and nothing of the
server or the command line; `maas` then names the extra it needs, and so does `maas serve`.
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from reference_server.testing import ServerProcess
from tests.constants import API_KEY, GENERATOR

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
SDK_ONLY = """
import importlib.util, sys
from maas_sdk import MaaS
with MaaS(base_url=sys.argv[1], api_key=sys.argv[2]) as client:
    print(client.chat([{"role": "user", "content": "Hi"}], model=sys.argv[3], max_tokens=3).model)
for heavy in ("starlette", "uvicorn", "torch", "transformers", "typer", "rich"):
    assert importlib.util.find_spec(heavy) is None, heavy
"""


def run(*command: str | Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([str(part) for part in command], capture_output=True, text=True, timeout=600,
                            check=False, cwd="/")
    if check:
        assert result.returncode == 0, result.stdout + result.stderr
    return result


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    run(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", out, ROOT)
    (built,) = out.glob("maas_sdk-*.whl")
    return built


def test_the_wheel_carries_the_three_packages_and_the_playground(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    for package in ("maas_sdk/__init__.py", "maas_cli/__init__.py", "reference_server/__init__.py",
                    "reference_server/http/static/playground/index.html",
                    "reference_server/http/static/playground/app.js"):
        assert package in names, package
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert "maas = maas_cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


def test_plain_install_is_the_sdk_alone(wheel: Path, tmp_path: Path, server: ServerProcess) -> None:
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", venv)
    python, maas = venv / "bin" / "python", venv / "bin" / "maas"
    run(python, "-m", "pip", "install", "--quiet", wheel)
    required = run(python, "-c", "import importlib.metadata as m; print('\\n'.join(m.requires('maas-sdk')))")
    plain = sorted(line.split(">")[0].split("<")[0] for line in required.stdout.splitlines() if "extra" not in line)
    assert plain == ["httpx", "pydantic", "tenacity", "typing-extensions"]
    assert run(python, "-c", SDK_ONLY, server.base_url, API_KEY, GENERATOR).stdout.strip() == GENERATOR

    without_cli = run(maas, "--help", check=False)
    assert without_cli.returncode == 2 and without_cli.stdout == ""
    assert without_cli.stderr.strip().splitlines() == ["maas: the command line needs its extra: pip install 'maas-sdk[cli]'"]
    without_server = run(maas, "serve", check=False)
    assert without_server.returncode == 2
    (line,) = without_server.stderr.strip().splitlines()
    assert line.startswith("maas serve: the server is not installed") and "pip install 'maas-sdk[server]'" in line

    run(python, "-m", "pip", "install", "--quiet", f"{wheel}[cli]")
    helped = run(maas, "--help")
    assert " chat " in helped.stdout and " fine-tune " in helped.stdout
    listed = run(maas, "--base-url", server.base_url, "--api-key", API_KEY, "models", "--json")
    assert GENERATOR in listed.stdout
    assert run(maas, "serve", check=False).returncode == 2, "the cli extra does not bring the server"
