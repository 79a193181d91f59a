"""Who gets in, and what they may touch, over real HTTP.

Every `/v1` route needs a key (401 without or with a wrong one); keys come from
`MAAS_API_KEYS` and from a key file; a key's model allowlist gives 403 on every route
that names a model and hides other models from listings; each key sees only its own
files and jobs; keys never reach a log line (server or SDK); CORS is off unless
configured; per-key request and token rate limits answer 429 with `Retry-After`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from maas_sdk import AuthenticationError, MaaS, NotFoundError, PermissionDeniedError, RateLimitError
from reference_server.http.middleware.auth import KeyEntry, parse_key_file
from reference_server.http.routes import OPERATIONS
from reference_server.http.routing import Operation
from reference_server.testing import ServerProcess
from tests.constants import API_KEY, EMBEDDER, GENERATOR

DATA = Path(__file__).resolve().parents[1] / "data"
ENV_KEY = "sk-env-5b1f0c"
FULL_KEY = "sk-file-full-9a7e21"  # every model
EMBED_KEY = "sk-file-embed-3c55d0"  # only the embedder
GEN_KEY = "sk-file-gen-71be04"  # generators and fine-tuned models, by pattern
RPM_KEY = "sk-file-rpm-e0d9a6"
TPM_KEY = "sk-file-tpm-44c2f8"
ALL_KEYS = (ENV_KEY, FULL_KEY, EMBED_KEY, GEN_KEY, RPM_KEY, TPM_KEY)
RPM = 30
TPM = 100
ORIGIN = "https://app.example"
KEY_FILE = f"""\
# maas keys: KEY [MODEL,MODEL,...]
{FULL_KEY}
{EMBED_KEY}    {EMBEDDER}
{GEN_KEY}\tsmollm2-*, ft:*   # patterns
{RPM_KEY}
{TPM_KEY}
"""
# A valid body for each operation that names a model (beyond the documented examples).
MODEL_BODIES: dict[str, dict[str, Any]] = {
    "/v1/evaluations": {"file": "file-0123456789abcdef"},
    "/v1/fine_tuning/jobs": {"training_file": "file-0123456789abcdef"},
}


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server with keys from the environment and a file, allowlists, rate limits and CORS."""
    workdir = tmp_path_factory.mktemp("secured")
    (workdir / "keys").write_text(KEY_FILE)
    env = {
        "MAAS_API_KEYS": ENV_KEY,
        "MAAS_API_KEYS_FILE": str(workdir / "keys"),
        "MAAS_RATE_LIMIT_RPM": str(RPM),
        "MAAS_RATE_LIMIT_TPM": str(TPM),
        "MAAS_CORS_ORIGINS": ORIGIN,
        "MAAS_DATA_DIR": str(workdir / "data"),
        "MAAS_THREADS": "1",
        "MAAS_LOG_LEVEL": "debug",
    }
    with ServerProcess(env=env, log_path=workdir / "server.log", extra_args=["--access-log"]) as proc:
        yield proc


def bearer(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


def call(base: str, op: Operation, headers: dict[str, str], body: dict[str, Any] | None = None) -> httpx.Response:
    path = op.path
    for param in op.params:
        if param.location == "path":
            path = path.replace("{" + param.name + "}", "x")
    return httpx.request(op.method, base + path, headers=headers, json=body, timeout=60)


V1 = [op for op in OPERATIONS if op.authenticated]
NAMING_A_MODEL = [op for op in OPERATIONS if op.request is not None and "model" in op.request.model_fields]


def anthropic_shaped(op: Operation) -> bool:
    """The Messages routes answer errors in Anthropic's shape: {"type": "error", "error": {"type", "message"}}."""
    return op.path.startswith("/v1/messages")


@pytest.mark.parametrize("op", V1, ids=lambda op: f"{op.method} {op.path}")
def test_every_v1_route_needs_a_valid_key(server: ServerProcess, op: Operation) -> None:
    missing = call(server.url, op, {})
    assert missing.status_code == 401, missing.text
    assert missing.headers["www-authenticate"] == "Bearer"
    if anthropic_shaped(op):
        assert missing.json()["error"]["type"] == "authentication_error"
    else:
        assert missing.json()["error"]["code"] == "invalid_api_key"
    wrong = call(server.url, op, bearer(API_KEY + "x"))
    assert wrong.status_code == 401 and "Incorrect API key" in wrong.json()["error"]["message"]
    not_bearer = call(server.url, op, {"authorization": f"Basic {API_KEY}"})
    assert not_bearer.status_code == 401


@pytest.mark.parametrize("path", ["/health", "/ready", "/metrics", "/openapi.json", "/playground",
                                  "/playground/app.js"])
def test_operational_routes_are_open(server: ServerProcess, path: str) -> None:
    assert httpx.get(server.url + path, timeout=10).status_code == 200


def test_key_file_format() -> None:
    assert parse_key_file(KEY_FILE) == [
        KeyEntry(FULL_KEY), KeyEntry(EMBED_KEY, (EMBEDDER,)), KeyEntry(GEN_KEY, ("smollm2-*", "ft:*")),
        KeyEntry(RPM_KEY), KeyEntry(TPM_KEY),
    ]
    assert parse_key_file("sk-a monthly_tokens=1000\nsk-b  m1, m2  monthly_tokens=5 # both\n") == [
        KeyEntry("sk-a", None, 1000), KeyEntry("sk-b", ("m1", "m2"), 5)]
    for bad in ("sk-b model a,b", "sk-b monthly_tokens=-3", "sk-b monthly_tokens=lots", "sk-b budget=5"):
        with pytest.raises(ValueError, match="line 2"):
            parse_key_file(f"sk-a\n{bad}\n")


@pytest.mark.slow  # the keyed server of its own: seconds to start, rate-limit waits
def test_keys_from_the_environment_and_the_file_all_work(secured: ServerProcess) -> None:
    for key in (ENV_KEY, FULL_KEY, EMBED_KEY, GEN_KEY):
        assert httpx.get(f"{secured.base_url}/models", headers=bearer(key)).status_code == 200


@pytest.mark.slow  # the keyed server of its own: seconds to start, rate-limit waits
def test_allowlist_gives_403_and_hides_other_models(secured: ServerProcess) -> None:
    with MaaS(api_key=EMBED_KEY, base_url=secured.base_url, max_retries=0) as client:
        assert [m.id for m in client.models.list().data] == [EMBEDDER]
        assert len(client.embed("fine", model=EMBEDDER).vectors) == 1
        with pytest.raises(PermissionDeniedError) as denied:
            client.generate("Hi", model=GENERATOR, max_tokens=1)
        assert (denied.value.param, denied.value.code) == ("model", "model_not_allowed")
        with pytest.raises(PermissionDeniedError):
            client.generate("Hi", model="no-such-model", max_tokens=1)  # 403, not 404: nothing to probe
        with pytest.raises(PermissionDeniedError):
            client.models.retrieve(GENERATOR)
    with MaaS(api_key=GEN_KEY, base_url=secured.base_url, max_retries=0) as client:
        assert [m.id for m in client.models.list().data] == [GENERATOR]
        assert client.generate("Hi", model=GENERATOR, max_tokens=1).usage is not None
        with pytest.raises(PermissionDeniedError):
            client.embed("fine", model=EMBEDDER)
    with MaaS(api_key=FULL_KEY, base_url=secured.base_url, max_retries=0) as client:
        assert {m.id for m in client.models.list().data} == {GENERATOR, EMBEDDER}
        with pytest.raises(NotFoundError):
            client.generate("Hi", model="no-such-model", max_tokens=1)


@pytest.mark.parametrize("op", NAMING_A_MODEL, ids=lambda op: f"{op.method} {op.path}")
@pytest.mark.slow  # the keyed server of its own: seconds to start, rate-limit waits
def test_allowlist_holds_on_every_route_that_names_a_model(secured: ServerProcess, op: Operation) -> None:
    body = {**(op.example or MODEL_BODIES[op.path]), "model": EMBEDDER}
    reply = call(secured.url, op, bearer(GEN_KEY), body)
    assert reply.status_code == 403, reply.text
    if anthropic_shaped(op):  # Anthropic's error body has no param: the message names the model
        assert reply.json()["error"]["type"] == "permission_error" and EMBEDDER in reply.json()["error"]["message"]
    else:
        assert reply.json()["error"]["param"] == "model"


@pytest.mark.slow  # the keyed server of its own: seconds to start, rate-limit waits
def test_each_key_sees_only_its_own_files_and_jobs(secured: ServerProcess) -> None:
    with MaaS(api_key=FULL_KEY, base_url=secured.base_url, max_retries=0) as owner, \
            MaaS(api_key=ENV_KEY, base_url=secured.base_url, max_retries=0) as other:
        upload = owner.files.upload(DATA / "sentiment_validation.jsonl")
        job = owner.fine_tuning.jobs.create(model=EMBEDDER, training_file=upload.id,
                                            hyperparameters={"max_steps": 1})
        try:
            assert upload.id in [f.id for f in owner.files.list().data]
            assert upload.id not in [f.id for f in other.files.list().data]
            for file_call in (other.files.retrieve, other.files.content, other.files.delete):
                with pytest.raises(NotFoundError):
                    file_call(upload.id)
            for job_call in (other.fine_tuning.jobs.retrieve, other.fine_tuning.jobs.cancel):
                with pytest.raises(NotFoundError):
                    job_call(job.id)
            assert job.id not in [j.id for j in other.fine_tuning.jobs.list()]
            reply = httpx.post(f"{secured.base_url}/fine_tuning/jobs", headers=bearer(ENV_KEY),
                               json={"model": EMBEDDER, "training_file": upload.id})
            assert reply.status_code == 400 and reply.json()["error"]["code"] == "file_not_found"
            assert owner.files.retrieve(upload.id).id == upload.id
        finally:
            if not owner.fine_tuning.jobs.retrieve(job.id).done:
                owner.fine_tuning.jobs.cancel(job.id)


def test_cors_is_off_by_default(server: ServerProcess) -> None:
    preflight = httpx.options(f"{server.base_url}/models", headers={
        "origin": ORIGIN, "access-control-request-method": "GET"})
    assert "access-control-allow-origin" not in preflight.headers
    reply = httpx.get(f"{server.base_url}/models", headers={"origin": ORIGIN, **bearer(API_KEY)})
    assert reply.status_code == 200 and "access-control-allow-origin" not in reply.headers


@pytest.mark.slow  # the keyed server of its own: seconds to start, rate-limit waits
def test_cors_allows_only_the_configured_origins(secured: ServerProcess) -> None:
    asked = {"access-control-request-method": "POST", "access-control-request-headers": "authorization"}
    preflight = httpx.options(f"{secured.base_url}/embeddings", headers={"origin": ORIGIN, **asked})
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == ORIGIN
    foreign = httpx.options(f"{secured.base_url}/embeddings", headers={"origin": "https://evil.example", **asked})
    assert foreign.status_code == 400 and "access-control-allow-origin" not in foreign.headers
    reply = httpx.get(f"{secured.base_url}/models", headers={"origin": ORIGIN, **bearer(FULL_KEY)})
    assert reply.headers["access-control-allow-origin"] == ORIGIN
    assert "x-request-id" in reply.headers["access-control-expose-headers"]


@pytest.mark.slow  # the keyed server of its own: seconds to start, rate-limit waits
def test_requests_per_minute_per_key(secured: ServerProcess) -> None:
    codes = [httpx.get(f"{secured.base_url}/models", headers=bearer(RPM_KEY)).status_code for _ in range(RPM)]
    assert codes == [200] * RPM
    limited = httpx.get(f"{secured.base_url}/models", headers=bearer(RPM_KEY))
    assert limited.status_code == 429
    assert limited.json()["error"]["code"] == "rate_limit_exceeded"
    assert 1 <= int(limited.headers["retry-after"]) <= 60
    assert httpx.get(f"{secured.base_url}/models", headers=bearer(FULL_KEY)).status_code == 200, "per key"
    with MaaS(api_key=RPM_KEY, base_url=secured.base_url, max_retries=0) as client, \
            pytest.raises(RateLimitError):
        client.models.list()


@pytest.mark.slow  # the keyed server of its own: seconds to start, rate-limit waits
def test_tokens_per_minute_per_key(secured: ServerProcess) -> None:
    """Generation is charged prompt + max_tokens at admission; embeddings their input tokens."""
    with MaaS(api_key=TPM_KEY, base_url=secured.base_url, max_retries=0) as client:
        too_big = httpx.post(f"{secured.base_url}/completions", headers=bearer(TPM_KEY),
                             json={"model": GENERATOR, "prompt": "Hi", "max_tokens": TPM + 1})
        assert too_big.status_code == 400 and too_big.json()["error"]["param"] == "max_tokens"
        for _ in range(2):
            client.generate("Hi", model=GENERATOR, max_tokens=40, temperature=0)
        with pytest.raises(RateLimitError) as limited:
            client.generate("Hi", model=GENERATOR, max_tokens=40)
        assert limited.value.code == "rate_limit_exceeded"
        assert 1 <= int(limited.value.response.headers["retry-after"]) <= 60
        with pytest.raises(RateLimitError):
            client.embed(["word " * 40], model=EMBEDDER)
    assert httpx.post(f"{secured.base_url}/completions", headers=bearer(FULL_KEY),
                      json={"model": GENERATOR, "prompt": "Hi", "max_tokens": 40}, timeout=60).status_code == 200


@pytest.mark.slow  # the keyed server of its own: seconds to start, rate-limit waits
def test_keys_never_reach_a_log(secured: ServerProcess, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="maas_sdk")
    with MaaS(api_key=FULL_KEY, base_url=secured.base_url, max_retries=1) as client:
        client.embed("hello", model=EMBEDDER)
    with MaaS(api_key=FULL_KEY + "-wrong", base_url=secured.base_url, max_retries=0) as client, \
            pytest.raises(AuthenticationError):
        client.models.list()
    assert "authorization" in caplog.text.lower(), "the SDK logged its request headers"
    server_log = Path(secured.log_path or "").read_text(errors="replace")
    assert "GET /v1/models" in server_log, "the access log is on"
    for key in ALL_KEYS:
        assert key not in caplog.text
        assert key not in server_log
        assert key[3:] not in server_log
