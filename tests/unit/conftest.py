"""Fixtures of the unit tests: a fake clock, and no MAAS_* variables leaking in from the environment."""

from __future__ import annotations

import pytest

from .fakes import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("MAAS_API_KEY", "MAAS_BASE_URL", "MAAS_LOG"):
        monkeypatch.delenv(name, raising=False)
