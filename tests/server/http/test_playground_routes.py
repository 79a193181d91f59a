"""The playground's routes in-process: served open with a strict CSP, off with MAAS_PLAYGROUND=false."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from reference_server.app import create_app
from reference_server.http.routes.playground import ASSETS
from reference_server.settings import Settings


def client_for(data_dir: Path, **settings: object) -> Iterator[TestClient]:
    """An app on a data directory of its own: the default one may hold another version's database."""
    app = create_app(Settings(default_models=False, api_keys=["sk-playground"], data_dir=data_dir, **settings))
    with TestClient(app) as http:
        yield http


@pytest.fixture(scope="module")
def http(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    yield from client_for(tmp_path_factory.mktemp("playground"))


def test_root_leads_to_the_playground(http: TestClient) -> None:
    response = http.get("/", follow_redirects=False)
    assert response.status_code == 307 and response.headers["location"] == "/playground"


def test_page_and_assets_are_open_and_allow_nothing_remote(http: TestClient) -> None:
    page = http.get("/playground")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "connect-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert "http" not in policy and "unsafe" not in policy
    assert page.headers["x-content-type-options"] == "nosniff"
    for name in ("app.js", "style.css"):
        assert f'"/playground/{name}"' in page.text
        asset = http.get(f"/playground/{name}")
        assert asset.status_code == 200 and asset.headers["content-security-policy"] == policy
    assert http.get("/playground/app.js").headers["content-type"].startswith("text/javascript")
    assert set(ASSETS) == {"app.js", "style.css"}


def test_no_asset_outside_the_folder(http: TestClient) -> None:
    for name in ("index.htm", "..%2Fplayground.py", "%2E%2E%2F%2E%2E%2Fapp.py", "nope.js"):
        response = http.get(f"/playground/{name}")
        assert response.status_code == 404, name
        assert response.json()["error"]["type"] == "not_found_error"


def test_the_page_names_nothing_remote() -> None:
    from reference_server.http.routes.playground import STATIC

    for path in STATIC.iterdir():
        text = path.read_text()
        assert "http://" not in text and "https://" not in text, path.name
    script = (STATIC / "app.js").read_text()
    assert "sessionStorage" in script and "localStorage" not in script
    assert "Authorization" in script and "?key=" not in script and "api_key=" not in script


def test_the_api_still_needs_its_key(http: TestClient) -> None:
    assert http.get("/v1/models").status_code == 401
    assert http.get("/v1/models", headers={"authorization": "Bearer sk-playground"}).status_code == 200


def test_off_with_a_setting(tmp_path: Path) -> None:
    for http in client_for(tmp_path, playground=False):
        assert http.get("/playground").status_code == 404
        assert http.get("/playground/app.js").status_code == 404
        assert http.get("/", follow_redirects=False).status_code == 404
        assert http.get("/health").status_code == 200


def test_setting_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAAS_PLAYGROUND", "false")
    assert Settings().playground is False
    monkeypatch.delenv("MAAS_PLAYGROUND")
    assert Settings().playground is True
