"""The SDK's batch file helpers: the input JSONL written from request bodies or whole lines, and
results read back from output and error files in the order of the requests."""

from __future__ import annotations

import json

import pytest

from maas_sdk._batch_files import custom_ids, ordered_results, requests_jsonl
from maas_sdk.protocol import BatchRequest


def test_bodies_are_numbered_and_lines_keep_their_ids() -> None:
    data = requests_jsonl([{"model": "m", "input": "a"},
                           {"custom_id": "mine", "body": {"model": "m", "input": "b"}},
                           BatchRequest(custom_id="typed", url="/v1/embeddings", body={"model": "m", "input": "c"})],
                          "/v1/embeddings")
    lines = [json.loads(line) for line in data.splitlines()]
    assert [line["custom_id"] for line in lines] == ["request-0", "mine", "typed"]
    assert all(line["method"] == "POST" and line["url"] == "/v1/embeddings" for line in lines)
    assert lines[0]["body"] == {"model": "m", "input": "a"}
    assert custom_ids(data) == ["request-0", "mine", "typed"]
    with pytest.raises(ValueError, match="at least one request"):
        requests_jsonl([], "/v1/embeddings")


def test_results_come_back_in_request_order() -> None:
    def result(custom_id: str, status: int) -> str:
        return json.dumps({"id": f"batch_req_{custom_id}", "custom_id": custom_id,
                           "response": {"status_code": status, "request_id": "req_1", "body": {}}, "error": None})

    output = (result("c", 200) + "\n" + result("a", 200) + "\n").encode()
    errors = (result("b", 400) + "\n").encode()
    found = ordered_results(["a", "b", "c", "never-ran"], [output, errors])
    assert [(r.custom_id, r.ok) for r in found] == [("a", True), ("b", False), ("c", True)]
    assert found[1].response is not None and found[1].response.request_id == "req_1"
