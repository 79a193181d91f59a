"""The OpenAPI document: complete (every route of the app, nothing else), valid OpenAPI 3.1
whose schemas are exactly the wire models', and served open at `/openapi.json`."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from starlette.applications import Starlette
from starlette.routing import Mount, Route
from starlette.testclient import TestClient

from maas_sdk import protocol as p
from reference_server.app import create_app
from reference_server.http.openapi import REF, fill_limits, openapi_document
from reference_server.http.routes import OPERATIONS
from reference_server.settings import Settings


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Starlette:
    return create_app(Settings(default_models=False, api_keys=["sk-openapi-test"],
                               data_dir=tmp_path_factory.mktemp("data")))


@pytest.fixture(scope="module")
def http(app: Starlette) -> Iterator[TestClient]:
    with TestClient(app) as client:
        yield client


def app_operations(app: Starlette) -> set[tuple[str, str]]:
    found = set()
    pending: list[tuple[str, Any]] = [("", route) for route in app.routes]
    while pending:
        prefix, route = pending.pop()
        if isinstance(route, Mount):
            pending.extend((prefix + route.path, child) for child in route.routes)
            continue
        assert isinstance(route, Route), f"{route!r} is not a plain route; document how it is mounted"
        path = re.sub(r"\{(\w+)(:\w+)?\}", r"{\1}", prefix + route.path)
        for method in route.methods or ():
            if method != "HEAD":
                found.add((method, path))
    return found


def document_operations(doc: dict[str, Any]) -> set[tuple[str, str]]:
    return {(method.upper(), path) for path, item in doc["paths"].items() for method in item}


def test_every_route_is_documented_and_nothing_else(app: Starlette) -> None:
    routes = app_operations(app)
    documented = document_operations(openapi_document())
    assert routes - documented == set(), "routes served without a RouteTable declaration"
    assert documented - routes == set(), "documented operations the app does not serve"
    assert len(OPERATIONS) == len(documented), "an operation is listed twice"


def test_schemas_are_the_wire_models() -> None:
    doc = openapi_document()
    schemas = doc["components"]["schemas"]
    completions = doc["paths"]["/v1/completions"]["post"]
    assert completions["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/CompletionRequest"
    }
    expected = fill_limits(p.CompletionRequest.model_json_schema(ref_template=REF), Settings.model_construct().model_dump())
    expected.pop("$defs", None)
    assert schemas["CompletionRequest"] == expected
    assert schemas["CompletionRequest"]["additionalProperties"] is False, "unknown request fields are rejected"
    ok = completions["responses"]["200"]["content"]
    assert ok["application/json"]["schema"] == {"$ref": "#/components/schemas/Generation"}
    event = ok["text/event-stream"]["schema"]["properties"]["data"]["anyOf"]
    assert event[0] == {"const": "[DONE]"}
    assert event[1]["contentSchema"]["anyOf"][0] == {"$ref": "#/components/schemas/GenerationChunk"}
    error = completions["responses"]["429"]
    assert error["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorBody"}
    assert error["headers"]["Retry-After"]["required"] is True


def test_every_reference_resolves_and_every_v1_operation_is_protected() -> None:
    doc = openapi_document()
    refs = set(re.findall(r'"\$ref": "#/components/schemas/([^"]+)"', _dump(doc)))
    assert refs <= set(doc["components"]["schemas"]), refs - set(doc["components"]["schemas"])
    for path, item in doc["paths"].items():
        for method, op in item.items():
            protected = "security" in op
            # vLLM's tokenizer, rerank and score, and Cohere's v2 rerank sit at the root, keyed too.
            keyed_root = path in ("/tokenize", "/detokenize", "/tokenizer_info", "/rerank", "/score", "/v2/rerank")
            assert protected == (path.startswith("/v1") or keyed_root), f"{method.upper()} {path}"
            if protected:
                assert {"401", "429", "503"} <= set(op["responses"]), f"{method.upper()} {path}"
            params = {param["name"] for param in op.get("parameters", []) if param["in"] == "path"}
            assert params == set(re.findall(r"\{(\w+)\}", path)), f"{method.upper()} {path}"


def test_document_loads_as_openapi_31() -> None:
    schema = schemathesis.openapi.from_dict(openapi_document())
    labels = {op.ok().label for op in schema.get_all_operations()}
    assert "POST /v1/chat/completions" in labels
    assert len(labels) == len(OPERATIONS)


def test_served_without_a_key(http: TestClient) -> None:
    reply = http.get("/openapi.json")
    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("application/json")
    assert reply.json() == openapi_document()
    assert reply.json()["openapi"] == "3.1.0"


def _bound(prop: dict[str, Any], keyword: str) -> Any:
    """`keyword` of a property's schema, or of its non-null branch."""
    return prop.get(keyword, next((b[keyword] for b in prop.get("anyOf", ()) if keyword in b), None))


def test_the_server_limits_are_the_schemas_bounds(tmp_path: Path) -> None:
    small = Settings(default_models=False, max_tokens_limit=7, max_n=3, max_prompts=5, embed_max_inputs=9,
                     data_dir=tmp_path)
    schemas = openapi_document(small)["components"]["schemas"]
    completion = schemas["CompletionRequest"]["properties"]
    assert _bound(completion["max_tokens"], "maximum") == 7 and _bound(completion["min_tokens"], "maximum") == 7
    assert _bound(completion["n"], "maximum") == 3 and _bound(completion["best_of"], "maximum") == 3
    assert [branch.get("maxItems") for branch in completion["prompt"]["anyOf"]] == [None, 5, None, 5]
    chat = schemas["ChatCompletionRequest"]["properties"]
    assert _bound(chat["max_completion_tokens"], "maximum") == 7 and _bound(chat["max_tokens"], "minimum") == 1
    assert schemas["EmbeddingRequest"]["properties"]["input"]["anyOf"][1]["maxItems"] == 9
    assert "x-server-limit" not in json.dumps(openapi_document(small))
    with TestClient(create_app(small)) as client:
        assert client.get("/openapi.json").json() == openapi_document(small)


def test_optional_request_fields_take_null_and_required_ones_do_not() -> None:
    schema = openapi_document()["components"]["schemas"]["EmbeddingRequest"]
    assert {"type": "null"} in schema["properties"]["encoding_format"]["anyOf"]
    assert "null" not in json.dumps(schema["properties"]["input"]) and "input" in schema["required"]


def test_links_lead_from_what_creates_an_id_to_what_takes_it() -> None:
    doc = openapi_document()
    operations = {op["operationId"]: (path, op) for item_path, item in doc["paths"].items()
                  for path, op in ((item_path, op) for op in item.values())}
    links = doc["paths"]["/v1/files"]["post"]["responses"]["200"]["links"]
    assert {operations[link["operationId"]][0] for link in links.values()} == {
        "/v1/files/{file_id}", "/v1/files/{file_id}/content"}
    jobs = doc["paths"]["/v1/fine_tuning/jobs"]["post"]["responses"]["200"]["links"]
    assert len(jobs) == 4
    for link in [*links.values(), *jobs.values()]:
        path, _ = operations[link["operationId"]]
        assert set(link["parameters"]) == set(re.findall(r"\{(\w+)\}", path))


def test_a_405_lists_every_method_of_the_path(http: TestClient) -> None:
    reply = http.put("/v1/files", headers={"authorization": "Bearer sk-openapi-test"})
    assert reply.status_code == 405
    assert {"GET", "POST"} <= {m.strip() for m in reply.headers["allow"].split(",")}
    reply = http.post("/v1/files/file-1", headers={"authorization": "Bearer sk-openapi-test"})
    assert {"GET", "DELETE"} <= {m.strip() for m in reply.headers["allow"].split(",")}


def _dump(doc: dict[str, Any]) -> str:
    return json.dumps(doc)
