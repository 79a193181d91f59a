"""Shared fixtures: ONE reference server per test session, with the real default models,
on a free loopback port, protected by an API key (so every call also tests auth); and, for the
tests that run against both store backends, ONE PostgreSQL server per session.

Under pytest-xdist (`make test` runs two workers) a session is a worker: each worker starts its
own server and PostgreSQL, on free ports and in its own temporary folders, so workers share
nothing but the read-only model cache."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from maas_sdk import AsyncMaaS, MaaS
from reference_server.testing import ServerProcess
from tests.constants import API_KEY, BUDGET_KEY, BUDGET_TOKENS, SERVER_THREADS, TEAM_KEYS, USAGE_KEY
from tests.postgres import PostgresServer

# Servers and engines the tests start decode eager: compiling a server's decode steps takes its
# two cores for minutes after it is ready (tests/server/inference/engine/test_compiled_decode.py
# covers the compiled path).
os.environ.setdefault("MAAS_ENGINE_COMPILE", "off")


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    workdir = tmp_path_factory.mktemp("server")
    (workdir / "keys").write_text(f"{USAGE_KEY}\n{BUDGET_KEY} monthly_tokens={BUDGET_TOKENS}\n")
    env = {
        "MAAS_API_KEYS": ",".join((API_KEY, *TEAM_KEYS)),
        "MAAS_API_KEYS_FILE": str(workdir / "keys"),
        "MAAS_DATA_DIR": str(workdir / "data"),
        "MAAS_THREADS": SERVER_THREADS,
        "MAAS_LOG_LEVEL": "info",
        # float32 whatever `auto` picks on this CPU: the suite compares greedy text, seeded
        # samples and logprobs across batch shapes, which bfloat16 rounding does not keep equal.
        "MAAS_DTYPE": os.environ.get("MAAS_DTYPE", "float32"),
        # Low enough that a test can exceed it; ordinary schemas compile in milliseconds.
        "MAAS_GRAMMAR_COMPILE_TIMEOUT": "3",
    }
    log = Path(os.environ.get("MAAS_TEST_SERVER_LOG", workdir / "server.log"))
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker and "MAAS_TEST_SERVER_LOG" in os.environ:
        log = log.with_name(f"{log.stem}-{worker}{log.suffix}")  # one log per worker's server
    with ServerProcess(env=env, log_path=log) as proc:
        yield proc


@pytest.fixture(scope="session")
def client(server: ServerProcess) -> Iterator[MaaS]:
    with MaaS(api_key=API_KEY, base_url=server.base_url, timeout=120) as c:
        yield c


@pytest.fixture
async def async_client(server: ServerProcess) -> AsyncIterator[AsyncMaaS]:
    async with AsyncMaaS(api_key=API_KEY, base_url=server.base_url, timeout=120) as c:
        yield c


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A real PostgreSQL server on a free loopback port; `create_database()` gives each test its own."""
    server = PostgresServer().start()
    try:
        yield server
    finally:
        server.stop()
