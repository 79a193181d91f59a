"""Request parsing and response helpers shared by every route.

`parse_body` turns any malformed or invalid JSON body into a 400 that names the
offending parameter, so no handler ever sees unvalidated input.
"""

from __future__ import annotations

import json
import math
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import Response

from maas_sdk.protocol.common import BRANCH_MARK
from reference_server.datasets.formats import SURROGATE_ESCAPE
from reference_server.errors import InvalidRequest
from reference_server.http.errors import HTTPError, bad_request
from reference_server.http.middleware.auth import caller_of, require_model
from reference_server.inference.registry import ServedModel
from reference_server.state import state_of

M = TypeVar("M", bound=BaseModel)


def _loc_to_param(loc: tuple[Any, ...], data: Any = None) -> str:
    """The body path of an error location. Union branches add the branch's name to the location
    and tagged unions the tag (the value of `"type"`, just before the tagged object's own
    fields); walking the body tells a tag from a field, so only the field path is kept."""
    parts: list[str] = []
    node, tag_skipped = data, False
    for position, item in enumerate(loc):
        if isinstance(item, int):
            parts.append(f"[{item}]")
            node, tag_skipped = (node[item] if isinstance(node, list) and 0 <= item < len(node) else None), False
        elif item in _BRANCH_NAMES or "[" in str(item) or str(item).startswith(BRANCH_MARK):
            continue
        elif (isinstance(node, dict) and node.get("type") == item and not tag_skipped
              and position < len(loc) - 1):
            tag_skipped = True
        else:
            parts.append(("." if parts else "") + str(item))
            node, tag_skipped = (node.get(item) if isinstance(node, dict) else None), False
    return "".join(parts) or "body"


_BRANCH_NAMES = frozenset({"str", "function-after", "literal"})


def validation_error(exc: ValidationError, data: Any = None) -> InvalidRequest:
    """The first validation error as a 400 naming the parameter (as a path in `data`, the body)."""
    first = exc.errors(include_url=False)[0]
    param = _loc_to_param(tuple(first["loc"]), data)
    kind = first["type"]
    if kind == "extra_forbidden":
        message = f"Unrecognized request argument supplied: {param}"
        code = "unknown_parameter"
    elif kind == "missing":
        message = f"Missing required parameter: {param}"
        code = "missing_required_parameter"
    elif isinstance(first.get("input"), float) and math.isnan(first["input"]):
        # NaN fails every bound check, so pydantic's message would name a bound.
        message = f"Invalid value for {param}: must be a number, got NaN."
        code = "invalid_value"
    else:
        message = f"Invalid value for {param}: {first['msg']}"
        code = "invalid_value"
    return bad_request(message, param=param, code=code)


async def read_json(request: Request) -> Any:
    """The JSON body, bounded by the server's `max_body_bytes` (413 beyond it)."""
    limit: int = state_of(request).settings.max_body_bytes
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise HTTPError(413, f"Request body of {declared} bytes exceeds the limit of {limit} bytes.",
                       code="request_too_large")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPError(413, f"Request body exceeds the limit of {limit} bytes.", code="request_too_large")
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw:
        raise bad_request("The request body is empty; a JSON object is required.", param="body",
                          code="invalid_json")
    try:
        data = json.loads(raw, parse_float=_number)
    except UnicodeDecodeError:
        raise bad_request("The request body is not valid UTF-8.", param="body", code="invalid_json") from None
    except ValueError as exc:
        raise bad_request(f"The request body is not valid JSON: {exc}", param="body", code="invalid_json") from None
    except RecursionError:
        raise bad_request("The request body is nested too deeply.", param="body",
                          code="invalid_json") from None
    if SURROGATE_ESCAPE.search(raw):  # the only way a lone surrogate gets into parsed JSON
        where = _lone_surrogate(data)
        if where is not None:
            raise bad_request(f"{where} holds a lone UTF-16 surrogate escape, which is not text.",
                              param=where, code="invalid_json")
    return data


def _number(text: str) -> float | int:
    """A JSON number written with a fraction or an exponent: an integer when it is one (`36.0`,
    `1e2`), as JSON Schema reads it, so that an integer parameter takes it; a float otherwise."""
    value = float(text)
    return int(value) if value.is_integer() else value


def _lone_surrogate(data: Any) -> str | None:
    """Where the first string (or key) holding a lone surrogate is, if any: JSON lets `\\ud800`
    through, but it is no Unicode text and no tokenizer can encode it."""
    stack: list[tuple[Any, str]] = [(data, "body")]
    while stack:
        value, path = stack.pop()
        if isinstance(value, str) and not _is_text(value):
            return path
        if isinstance(value, dict):
            for key, item in value.items():
                name = f"{path}.{key}" if path != "body" else str(key)
                if not _is_text(key):
                    return path
                stack.append((item, name))
        elif isinstance(value, list):
            stack.extend((item, f"{path}[{i}]") for i, item in enumerate(value))
    return None


def _is_text(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


async def parse_body(request: Request, model: type[M]) -> M:
    """The body as `model`. A body naming a `model` is checked against the caller's model
    allowlist here (403), so no route can forget to."""
    data = await read_json(request)
    if not isinstance(data, dict):
        raise bad_request("The request body must be a JSON object.", param="body", code="invalid_json")
    try:
        # Strict: a string is no number and a boolean no integer, as the OpenAPI document says.
        parsed = model.model_validate(data, strict=True)
    except ValidationError as exc:
        raise validation_error(exc, data) from None
    model_id = getattr(parsed, "model", None)
    if isinstance(model_id, str):
        require_model(request, model_id)
    return parsed


def served_model(request: Request, model_id: str, task: str | None = None) -> ServedModel:
    """The served model `model_id` as the caller sees it (another caller's fine-tuned model is
    a 404, like an unknown one), checked to serve `task` when given."""
    registry = state_of(request).registry
    principal = caller_of(request).principal
    if task is None:
        return registry.get(model_id, principal)
    return registry.get_for(model_id, task, principal)


def json_response(body: BaseModel, status: int = 200) -> Response:
    return Response(body.model_dump_json(exclude_none=False), status_code=status, media_type="application/json")
