"""The Responses API routes where no model is needed, in-process on a real store: what is
refused before any model is looked up (with the parameter named), and stored responses, which
only their own key can read, page through or delete, and which expire."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from reference_server.app import create_app
from reference_server.http.middleware.auth import key_id
from reference_server.settings import Settings
from reference_server.state import state_of_app
from reference_server.storage import ResponseRecord

KEY_A = "sk-responses-a"
KEY_B = "sk-responses-b"
A = {"Authorization": f"Bearer {KEY_A}"}
B = {"Authorization": f"Bearer {KEY_B}"}
from tests.helpers import ready_client


@pytest.fixture(scope="module")
def http(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    data = tmp_path_factory.mktemp("responses")
    app = create_app(Settings(default_models=False, api_keys=[KEY_A, KEY_B], data_dir=Path(data)))
    yield from ready_client(app)


def stored(http: TestClient, owner_key: str, n_items: int = 3, ttl: int = 3600) -> str:
    """A response stored for `owner_key` straight into the server's store, as the route stores one."""
    response_id = "resp_" + f"{time.monotonic_ns():048x}"[-48:]
    now = int(time.time())
    items = [{"id": f"msg_{i}", "type": "message", "role": "user", "status": "completed",
              "content": [{"type": "input_text", "text": f"item {i}"}]} for i in range(n_items)]
    body = {"id": response_id, "object": "response", "created_at": now, "status": "completed", "model": "m",
            "output": [{"id": "msg_out", "type": "message", "role": "assistant", "status": "completed",
                        "content": [{"type": "output_text", "text": "hello", "annotations": [], "logprobs": []}]}]}
    state_of_app(http.app).storage.db.store.add_response(ResponseRecord(
        id=response_id, owner=key_id(owner_key), created_at=now, expires_at=now + ttl, body=body,
        input_items=items, conversation=items))
    return response_id


def error(reply: Any, status: int) -> dict[str, str]:
    assert reply.status_code == status, reply.text
    body = reply.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    return dict(body["error"])


@pytest.mark.parametrize(("body", "param", "code"), [
    ({"model": "m", "input": "x", "bogus": 1}, "bogus", "unknown_parameter"),
    ({"model": "m"}, "input", "missing_required_parameter"),
    ({"model": "m", "input": []}, "input", "invalid_value"),
    ({"model": "m", "input": "x", "tools": [{"type": "web_search_preview"}]}, "tools[0].type", "unsupported_tool"),
    ({"model": "m", "input": "x", "tool_choice": {"type": "file_search"}}, "tool_choice", "unsupported_parameter"),
    ({"model": "m", "input": [{"role": "user", "content": [{"type": "input_image", "image_url": "http://x/y.png"}]}]},
     "input[0].content[0].type", "unsupported_content"),
    ({"model": "m", "input": [{"type": "item_reference", "id": "msg_1"}]}, "input[0].type", "unsupported_item"),
    ({"model": "m", "input": [{"role": "robot", "content": "x"}]}, "input[0].role", "invalid_value"),
    ({"model": "m", "input": "x", "background": True}, "background", "unsupported_parameter"),
    ({"model": "m", "input": "x", "conversation": "conv_1"}, "conversation", "unsupported_parameter"),
    ({"model": "m", "input": "x", "prompt": {"id": "pmpt_1"}}, "prompt", "unsupported_parameter"),
    ({"model": "m", "input": "x", "text": {"format": {"type": "xml"}}}, "text.format", "invalid_value"),
    ({"model": "m", "input": "x", "text": {"format": {"type": "json_schema", "name": "x"}}}, "text.format.schema",
     "missing_required_parameter"),
    ({"model": "m", "input": "x", "max_output_tokens": 0}, "max_output_tokens", "invalid_value"),
    ({"model": "m", "input": "x", "truncation": "sometimes"}, "truncation", "invalid_value"),
    ({"model": "m", "input": "x", "previous_response_id": "resp_nothing"}, "previous_response_id",
     "previous_response_not_found"),
])
def test_refused_before_any_model_is_looked_up(http: TestClient, body: dict[str, Any], param: str, code: str) -> None:
    found = error(http.post("/v1/responses", headers=A, json=body), 400)
    assert (found["param"], found["code"], found["type"]) == (param, code, "invalid_request_error")


def test_null_means_the_default(http: TestClient) -> None:
    body = {"model": "no-such-model", "input": "x", "instructions": None, "store": None, "truncation": None,
            "tools": None, "tool_choice": None, "parallel_tool_calls": None, "reasoning": None}
    assert error(http.post("/v1/responses", headers=A, json=body), 404)["param"] == "model"


def test_a_stored_response_is_read_by_its_key_only(http: TestClient) -> None:
    response_id = stored(http, KEY_A)
    got = http.get(f"/v1/responses/{response_id}", headers=A)
    assert got.status_code == 200 and got.json()["id"] == response_id
    assert got.json()["output"][0]["content"][0]["text"] == "hello"
    for method, path in [("GET", ""), ("GET", "/input_items"), ("DELETE", "")]:
        found = error(http.request(method, f"/v1/responses/{response_id}{path}", headers=B), 404)
        assert found["param"] == "response_id" and response_id in found["message"]
    # Another key cannot continue it either: it is unknown to them.
    other = {"model": "no-such-model", "input": "x", "previous_response_id": response_id}
    assert error(http.post("/v1/responses", headers=B, json=other), 400)["param"] == "previous_response_id"
    # Its own key continues it (and only then meets the unknown model).
    assert error(http.post("/v1/responses", headers=A, json=other), 404)["param"] == "model"
    assert http.delete(f"/v1/responses/{response_id}", headers=A).json() == {
        "id": response_id, "object": "response", "deleted": True}
    error(http.get(f"/v1/responses/{response_id}", headers=A), 404)
    error(http.delete(f"/v1/responses/{response_id}", headers=A), 404)


def test_an_expired_response_is_gone(http: TestClient) -> None:
    response_id = stored(http, KEY_A, ttl=-1)
    error(http.get(f"/v1/responses/{response_id}", headers=A), 404)
    body = {"model": "m", "input": "x", "previous_response_id": response_id}
    assert error(http.post("/v1/responses", headers=A, json=body), 400)["code"] == "previous_response_not_found"


def test_input_items_page_both_ways(http: TestClient) -> None:
    response_id = stored(http, KEY_A, n_items=5)
    path = f"/v1/responses/{response_id}/input_items"
    newest = http.get(path, headers=A).json()
    assert [i["id"] for i in newest["data"]] == ["msg_4", "msg_3", "msg_2", "msg_1", "msg_0"]
    assert (newest["object"], newest["first_id"], newest["last_id"], newest["has_more"]) == (
        "list", "msg_4", "msg_0", False)
    first = http.get(path, headers=A, params={"order": "asc", "limit": 2}).json()
    assert [i["id"] for i in first["data"]] == ["msg_0", "msg_1"] and first["has_more"]
    rest = http.get(path, headers=A, params={"order": "asc", "limit": 2, "after": "msg_1"}).json()
    assert [i["id"] for i in rest["data"]] == ["msg_2", "msg_3"] and rest["has_more"]
    last = http.get(path, headers=A, params={"order": "asc", "after": "msg_3"}).json()
    assert [i["id"] for i in last["data"]] == ["msg_4"] and not last["has_more"]
    assert last["data"][0]["content"] == [{"type": "input_text", "text": "item 4"}]
    for params, param in [({"limit": 0}, "limit"), ({"limit": 101}, "limit"), ({"order": "up"}, "order"),
                          ({"after": ""}, "after"), ({"before": "msg_1"}, "before")]:
        assert error(http.get(path, headers=A, params=params), 400)["param"] == param
    # A cursor naming no item is a 404, as on every list route.
    assert error(http.get(path, headers=A, params={"after": "msg_9"}), 404)["param"] == "after"


def test_a_malformed_id_is_not_found(http: TestClient) -> None:
    for response_id in ["resp_1", "file-abc", "resp_" + "g" * 48]:
        assert error(http.get(f"/v1/responses/{response_id}", headers=A), 404)["param"] == "response_id"
