"""Route behaviour that needs no model, in-process (fast tier): auth, unknown routes, body
validation, the mapping of domain errors, and the files API end to end on a real store."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from reference_server.app import create_app
from reference_server.settings import Settings

KEY_A = "sk-in-process-a"
KEY_B = "sk-in-process-b"
A = {"Authorization": f"Bearer {KEY_A}"}
B = {"Authorization": f"Bearer {KEY_B}"}
ROWS = b"".join(json.dumps({"text": f"row {i}", "label": "yes" if i % 2 else "no"}).encode() + b"\n"
                for i in range(4))
from tests.helpers import ready_client


@pytest.fixture(scope="module")
def http(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    data = tmp_path_factory.mktemp("in-process")
    app = create_app(Settings(default_models=False, api_keys=[KEY_A, KEY_B], data_dir=Path(data)))
    yield from ready_client(app)


def error(reply: object) -> dict[str, str]:
    body = reply.json()  # type: ignore[attr-defined]
    assert set(body) == {"error"}
    return dict(body["error"])


def test_open_routes_need_no_key(http: TestClient) -> None:
    assert http.get("/health").json() == {"status": "ok"}
    assert http.get("/ready").json() == {"status": "ready", "models": [], "fine_tuned_models": 0}
    assert http.get("/metrics").status_code == 200
    assert http.get("/openapi.json").json()["openapi"] == "3.1.0"


def test_the_api_needs_a_key(http: TestClient) -> None:
    reply = http.get("/v1/models")
    assert reply.status_code == 401 and reply.headers["www-authenticate"] == "Bearer"
    assert error(reply)["code"] == "invalid_api_key"
    assert http.get("/v1/models", headers={"Authorization": "Bearer sk-wrong"}).status_code == 401
    assert http.get("/v1/models", headers=A).json()["data"] == []


def test_unknown_routes_and_methods(http: TestClient) -> None:
    assert error(http.get("/v1/nothing-here", headers=A))["code"] == "unknown_route"
    assert http.get("/nothing-here").status_code == 404
    reply = http.delete("/v1/completions", headers=A)
    assert reply.status_code == 405 and error(reply)["code"] == "method_not_allowed"


def test_bodies_are_validated_before_any_model_is_looked_up(http: TestClient) -> None:
    bad_json = http.post("/v1/completions", headers={**A, "content-type": "application/json"}, content=b"{")
    assert bad_json.status_code == 400 and error(bad_json)["param"] == "body"
    unknown = http.post("/v1/completions", headers=A, json={"model": "m", "prompt": "x", "bogus": 1})
    assert unknown.status_code == 400
    assert error(unknown)["code"] == "unknown_parameter" and error(unknown)["param"] == "bogus"
    missing = http.post("/v1/embeddings", headers=A, json={"input": "x"})
    assert error(missing)["code"] == "missing_required_parameter" and error(missing)["param"] == "model"


def test_domain_errors_map_to_their_status(http: TestClient) -> None:
    reply = http.post("/v1/completions", headers=A, json={"model": "no-such-model", "prompt": "x"})
    assert reply.status_code == 404
    assert error(reply) == {"message": "The model 'no-such-model' does not exist.", "type": "not_found_error",
                            "param": "model", "code": "model_not_found"}
    job = http.post("/v1/fine_tuning/jobs", headers=A, json={"model": "no-such-model", "training_file": "file-x"})
    assert job.status_code == 404 and error(job)["param"] == "model"


def test_files_round_trip_and_stay_with_their_owner(http: TestClient) -> None:
    up = http.post("/v1/files", headers=A, files={"file": ("rows.jsonl", ROWS)}, data={"purpose": "fine-tune"})
    assert up.status_code == 200, up.text
    record = up.json()
    assert (record["bytes"], record["filename"], record["purpose"]) == (len(ROWS), "rows.jsonl", "fine-tune")
    assert [f["id"] for f in http.get("/v1/files", headers=A).json()["data"]] == [record["id"]]
    assert http.get(f"/v1/files/{record['id']}/content", headers=A).content == ROWS
    assert http.get("/v1/files", headers=B).json()["data"] == []
    assert error(http.get(f"/v1/files/{record['id']}", headers=B))["code"] == "file_not_found"
    evaluation = http.post("/v1/evaluations", headers=A, json={"model": "no-such-model", "file": record["id"]})
    assert evaluation.status_code == 404 and error(evaluation)["param"] == "model"
    deleted = http.delete(f"/v1/files/{record['id']}", headers=A).json()
    assert deleted == {"id": record["id"], "object": "file", "deleted": True}
    assert http.get(f"/v1/files/{record['id']}", headers=A).status_code == 404


def test_an_invalid_upload_names_the_line(http: TestClient) -> None:
    bad = ROWS + b'{"text": "no label"}\n'
    reply = http.post("/v1/files", headers=A, files={"file": ("bad.jsonl", bad)}, data={"purpose": "fine-tune"})
    assert reply.status_code == 400
    assert error(reply)["param"] == "file" and error(reply)["code"] == "invalid_file"
    assert "line 5" in error(reply)["message"]


def test_list_routes_take_after_and_limit_alike_and_name_a_bad_one(http: TestClient) -> None:
    """Each list route pages by `after` and `limit` the same way: the page after a cursor, a cursor
    naming nothing of the caller's a 404 naming `after`, a limit out of range a 400 naming `limit`;
    the batch or job a path names is the caller's, or the same 404 whatever the id."""
    for _ in range(3):
        http.post("/v1/files", headers=A, files={"file": ("rows.jsonl", ROWS)}, data={"purpose": "fine-tune"})
    mine = [f["id"] for f in http.get("/v1/files", headers=A).json()["data"]]
    page = http.get("/v1/files", headers=A, params={"after": mine[0], "limit": 1}).json()
    assert ([f["id"] for f in page["data"]], page["has_more"]) == ([mine[1]], len(mine) > 2)
    for path in ("/v1/files", "/v1/batches", "/v1/fine_tuning/jobs"):
        unknown = http.get(path, headers=A, params={"after": "nothing-of-yours"})
        assert unknown.status_code == 404 and error(unknown)["param"] == "after", (path, unknown.text)
        assert http.get(path, headers=B, params={"after": mine[0]}).status_code == 404, "another key's cursor"
        too_many = http.get(path, headers=A, params={"limit": 100_001})
        assert too_many.status_code == 400 and error(too_many)["param"] == "limit", path
    for path, param, code in (("/v1/batches/batch_0123456789abcdef01234567", "batch_id", "batch_not_found"),
                              ("/v1/batches/not-a-batch-id", "batch_id", "batch_not_found"),
                              ("/v1/fine_tuning/jobs/ftjob-0123456789abcdef01234567/events", "fine_tuning_job_id",
                               "job_not_found"),
                              ("/v1/fine_tuning/jobs/not-a-job-id/checkpoints", "fine_tuning_job_id", "job_not_found")):
        missing = http.get(path, headers=A)
        assert missing.status_code == 404 and (error(missing)["param"], error(missing)["code"]) == (param, code), path
