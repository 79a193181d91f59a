"""`GET /openapi.json`: the OpenAPI 3.1 document of every route, built from the wire models.

The operations come from the route tables (`reference_server.http.routes.OPERATIONS`), where
each is declared beside its handler with the pydantic models of `maas_sdk.protocol` it reads
and answers, so the document cannot drift from what the server serves and the SDK validates.
The test suite checks that every route of the app appears here (and nothing else), and fuzzes
the running server against the document.

The document is exact: a request it calls valid is not refused for its shape. The schemas
carry the bounds the routes enforce, the server's own limits among them (`max_tokens` at most
`MAAS_MAX_TOKENS_LIMIT`, ...: the protocol marks them, `openapi_document(settings)` fills them
in), and the rules across fields. What only the data decide (whether a model or file exists,
a model's vocabulary) is left to the 404s and 400s that name it. Links lead from the operations
that create a resource to those that take its id.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from maas_sdk import protocol as p
from maas_sdk._version import __version__
from maas_sdk.protocol.common import SERVER_LIMIT
from reference_server.http.routing import Operation
from reference_server.settings import Settings

Mode = Literal["validation", "serialization"]
REF = "#/components/schemas/{model}"

ERROR_MEANINGS: dict[int, str] = {
    400: "A parameter is missing or invalid (named in `error.param`), or the body is not a JSON object.",
    401: "The API key is missing or wrong.",
    403: "The API key may not use this model.",
    404: "No such model, file, job or route (another key's fine-tuned model reads as unknown).",
    408: "The request body stopped arriving for longer than the body timeout.",
    409: "The resource is in a state that does not allow this.",
    413: "The body or upload is larger than the server accepts.",
    415: "A JSON route was sent a body that is not `application/json`.",
    429: "Rate limit reached or the queue is full; retry after `Retry-After` seconds.",
    500: "The server failed; the body names no file and shows no stack.",
    503: "The server is loading its models or shutting down; retry after `Retry-After` seconds.",
    507: "The data directory is full; nothing was stored.",
}
RETRY_AFTER = {
    "description": "Whole seconds to wait before retrying.",
    "required": True,
    "schema": {"type": "string", "pattern": "^[0-9]+$"},
}


def _body_models(operations: Sequence[Operation]) -> list[tuple[type[BaseModel], Mode]]:
    pairs: list[tuple[type[BaseModel], Mode]] = [(p.ErrorBody, "serialization")]
    for op in operations:
        if op.error_body is not None:
            pairs.append((op.error_body, "serialization"))
        if op.request is not None:
            pairs.append((op.request, "validation"))
        for model in (op.response, op.stream):
            if model is not None:
                pairs.append((model, "serialization"))
    return list(dict.fromkeys(pairs))


def _error_responses(op: Operation, error_ref: dict[str, Any]) -> dict[str, Any]:
    statuses = set(op.errors)
    if op.authenticated:
        statuses |= {401, 429, 500, 503}
    responses: dict[str, Any] = {}
    for status in sorted(statuses):
        responses[str(status)] = {
            "description": ERROR_MEANINGS[status],
            "content": {"application/json": {"schema": error_ref}},
        }
        if status in (429, 503):
            responses[str(status)]["headers"] = {"Retry-After": RETRY_AFTER}
    return responses


def _event_schema(chunk_ref: dict[str, Any], error_ref: dict[str, Any], named: bool) -> dict[str, Any]:
    """One server-sent event of a stream (sent when the body says `"stream": true`)."""
    if named:
        return {
            "type": "object",
            "description": "`event: <type>` and `data: <event JSON>` per event, the event's `type` naming it; "
                           "`ping` events keep a silent stream alive, and an error after the stream has "
                           "started arrives as an `error` event.",
            "properties": {
                "event": {"type": "string"},
                "data": {"type": "string", "contentMediaType": "application/json", "contentSchema": chunk_ref},
            },
            "required": ["event", "data"],
        }
    return {
        "type": "object",
        "description": "`data: <chunk JSON>` events, then `data: [DONE]`. An error after the stream has "
                       "started arrives as `data: {\"error\": {...}}`, then `data: [DONE]`.",
        "properties": {
            "event": {"const": "message"},
            "data": {"anyOf": [{"const": "[DONE]"},
                               {"type": "string", "contentMediaType": "application/json",
                                "contentSchema": {"anyOf": [chunk_ref, error_ref]}}]},
        },
        "required": ["data"],
    }


def operation_id(method: str, doc_path: str) -> str:
    return method.lower() + doc_path.replace("/", "_").replace("{", "").replace("}", "").replace(".", "_")


def _links(op: Operation) -> dict[str, Any]:
    links: dict[str, Any] = {}
    for target in op.links:
        method, path = target.target.split(" ", 1)
        target_id = operation_id(method, path)
        links[target_id] = {"operationId": target_id, "parameters": dict(target.parameters)}
    return links


def _operation(op: Operation, refs: Mapping[tuple[Any, Mode], dict[str, Any]]) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "operationId": operation_id(op.method, op.doc_path),
        "summary": op.summary,
        "tags": list(op.tags),
    }
    error_ref = refs[(op.error_body or p.ErrorBody, "serialization")]
    if op.params:
        doc["parameters"] = [
            {"name": param.name, "in": param.location, "required": param.location == "path" or param.required,
             "schema": param.schema, "description": param.description}
            for param in op.params
        ]
    if op.request is not None:
        media: dict[str, Any] = {"schema": refs[(op.request, "validation")]}
        if op.example is not None:
            media["example"] = op.example
        doc["requestBody"] = {"required": True, "content": {"application/json": media}}
    elif op.multipart is not None:
        doc["requestBody"] = {"required": True, "content": {"multipart/form-data": {"schema": op.multipart}}}
    content: dict[str, Any] = {}
    if op.raw is not None:
        for media_type in (op.raw,) if isinstance(op.raw, str) else op.raw:
            content[media_type] = {"schema": {"type": "string"}}
    elif op.response is not None:
        content["application/json"] = {"schema": refs[(op.response, "serialization")]}
    elif op.response_schema is not None:
        content["application/json"] = {"schema": op.response_schema}
    if op.stream is not None:
        content["text/event-stream"] = {"schema": _event_schema(refs[(op.stream, "serialization")], error_ref,
                                                                      op.named_events)}
    if op.redirect is not None:
        doc["responses"] = {"307": {"description": f"Redirect to {op.redirect}.",
                                    "headers": {"location": {"schema": {"type": "string"}}}}}
        return doc
    doc["responses"] = {"200": {"description": "Success.", "content": content}, **_error_responses(op, error_ref)}
    if op.links:
        doc["responses"]["200"]["links"] = _links(op)
    if op.authenticated:
        doc["security"] = [{"bearerAuth": []}]
    return doc


def openapi_document(settings: Settings | None = None) -> dict[str, Any]:
    """The document of a server with `settings` (the defaults when None), built once per process
    and set of limits."""
    settings = settings if settings is not None else Settings.model_construct()
    return _with_limits(tuple((name, getattr(settings, name)) for name in sorted(_limit_names())))


@functools.lru_cache(maxsize=4)
def _with_limits(limits: tuple[tuple[str, Any], ...]) -> dict[str, Any]:
    """The document with each `x-server-limit` mark replaced by the keyword it names, set to the
    server's setting (`{"x-server-limit": {"maximum": "max_n"}}` -> `{"maximum": 8}`)."""
    document: dict[str, Any] = fill_limits(copy.deepcopy(_document()), dict(limits))
    return document


def fill_limits(schema: Any, values: Mapping[str, Any]) -> Any:
    """`schema` (changed in place) with its `x-server-limit` marks replaced by `values`."""
    pending: list[Any] = [schema]
    while pending:
        node = pending.pop()
        if isinstance(node, dict):
            for keyword, setting in node.pop(SERVER_LIMIT, {}).items():
                # An upper bound the protocol sets itself stays when the server's is higher.
                node[keyword] = min(values[setting], node.get(keyword, values[setting]))
            pending.extend(node.values())
        elif isinstance(node, list):
            pending.extend(node)
    return schema


@functools.lru_cache(maxsize=1)
def _limit_names() -> frozenset[str]:
    names: set[str] = set()
    pending: list[Any] = [_document()]
    while pending:
        node = pending.pop()
        if isinstance(node, dict):
            names.update(node.get(SERVER_LIMIT, {}).values())
            pending.extend(node.values())
        elif isinstance(node, list):
            pending.extend(node)
    return frozenset(names)


@functools.lru_cache(maxsize=1)
def _document() -> dict[str, Any]:
    from reference_server.http.routes import OPERATIONS

    refs, defs = models_json_schema(_body_models(OPERATIONS), ref_template=REF)
    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        paths.setdefault(op.doc_path, {})[op.method.lower()] = _operation(op, refs)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "maas reference server",
            "version": __version__,
            "description": "OpenAI-compatible inference API with classification, tokenization, files, "
                           "fine-tuning and evaluation extensions. Every error is "
                           "`{\"error\": {\"message\", \"type\", \"param\", \"code\"}}`.",
        },
        "paths": paths,
        "components": {
            "schemas": defs.get("$defs", {}),
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}},
        },
    }
