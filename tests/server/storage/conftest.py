"""The store's tests run on both backends: an SQLite file and a real PostgreSQL server."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(params=["sqlite", "postgresql"])
def where(request: pytest.FixtureRequest, tmp_path: Path) -> Path | str:
    """Where a store lives: an SQLite file's path, or the URL of a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return tmp_path / "maas.sqlite3"
    return str(request.getfixturevalue("postgres").create_database())
