"""The OpenAPI document: complete (every route of the app, nothing else), valid OpenAPI 3.1
whose schemas are exactly the wire models', and served open at `/openapi.json`."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from starlette.applications import Starlette
from starlette.routing import Mount, Route
from starlette.testclient import TestClient

from maas_sdk import protocol as p
from reference_server.app import create_app
from reference_server.http.openapi import REF, openapi_document
from reference_server.http.routes import OPERATIONS
from reference_server.settings import Settings


@pytest.fixture(scope="module")
def app() -> Starlette:
    return create_app(Settings(default_models=False, api_keys=["sk-openapi-test"]))


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
    expected = p.CompletionRequest.model_json_schema(ref_template=REF)
    expected.pop("$defs", None)
    assert schemas["CompletionRequest"] == expected
    assert schemas["CompletionRequest"]["additionalProperties"] is False, "unknown request fields are rejected"
    ok = completions["responses"]["200"]["content"]
    assert ok["application/json"]["schema"] == {"$ref": "#/components/schemas/Generation"}
    event = ok["text/event-stream"]["schema"]["properties"]["data"]
    assert event["contentSchema"]["anyOf"][0] == {"$ref": "#/components/schemas/GenerationChunk"}
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


def _dump(doc: dict[str, Any]) -> str:
    import json

    return json.dumps(doc)
