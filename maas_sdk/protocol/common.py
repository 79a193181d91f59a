"""Shapes shared by every operation: base classes, usage and the error body."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

# A key of the JSON Schema that the server's OpenAPI document replaces with its own setting:
# `{"x-server-limit": {"maximum": "max_n"}}` becomes `{"maximum": 8}` on a server started with
# `MAAS_MAX_N=8`. The protocol knows a limit exists; only the server knows its value.
SERVER_LIMIT = "x-server-limit"
NULL: dict[str, Any] = {"type": "null"}
# A pattern for text with something besides whitespace in it: whitespace as `str.strip()` takes
# it, which is more than a JSON Schema `\s` matches.
NOT_BLANK = "[^\\u0009-\\u000d\\u001c-\\u0020\\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]"


# A JSON Schema string with something in it besides whitespace.
TEXT: dict[str, Any] = {"type": "string", "pattern": NOT_BLANK}


def server_limit(**keywords: str) -> dict[str, Any]:
    """`{"x-server-limit": {keyword: setting, ...}}`, for a field's `json_schema_extra`."""
    return {SERVER_LIMIT: keywords}


def texts(limit: str) -> dict[str, Any]:
    """The JSON Schema of a `str | list[str]` field of texts: each with something in it, 1 to the
    server's setting `limit` of them."""
    return {"anyOf": [TEXT, {"type": "array", "items": TEXT, "minItems": 1, **server_limit(maxItems=limit)}]}


def without_models(*refused: str) -> Callable[[dict[str, Any]], None]:
    """A field's JSON Schema less the union branches of the models named `refused`: they stay in
    the model, for the 400 that names what was sent, but the schema offers what is served."""

    def drop(schema: dict[str, Any]) -> None:
        pending: list[Any] = [schema]
        while pending:
            node = pending.pop()
            if isinstance(node, dict):
                for key in ("oneOf", "anyOf"):
                    if key in node:
                        node[key] = [b for b in node[key] if _model_of(b) not in refused]
                mapping = node.get("discriminator", {}).get("mapping") if isinstance(node.get("discriminator"),
                                                                                       dict) else None
                if mapping:
                    node["discriminator"]["mapping"] = {k: v for k, v in mapping.items()
                                                        if _model_of({"$ref": v}) not in refused}
                pending.extend(node.values())
            elif isinstance(node, list):
                pending.extend(node)

    return drop


def _model_of(branch_schema: Any) -> str:
    """The model a `$ref` branch names (pydantic's references may carry a module prefix)."""
    ref = str(branch_schema.get("$ref", "")) if isinstance(branch_schema, dict) else ""
    return ref.rsplit("/", 1)[-1].split("-")[0].rsplit("__", 1)[-1]


def token_ids(*, min_items: int = 0) -> dict[str, Any]:
    """A list of token ids (each checked against the model's vocabulary by the server)."""
    schema: dict[str, Any] = {"type": "array", "items": {"type": "integer", "minimum": 0}}
    if min_items:
        schema["minItems"] = min_items
    return schema


def _request_schema(schema: dict[str, Any], model: type[BaseModel]) -> None:
    """The JSON Schema of a request body says what the server accepts, no more, no less:

    - every optional field accepts `null` (it means the default): a client generating requests
      from the schema may send it, and one that does must not be told it broke the schema;
    - the `SCHEMA_RULES` of the model and its bases (rules across fields: "`max_tokens: 0` needs
      `echo`") are added, under `allOf` when there are several.
    """
    rules = [vars(cls)["SCHEMA_RULES"] for cls in model.__mro__ if vars(cls).get("SCHEMA_RULES")]
    if len(rules) == 1:
        schema.update(rules[0])
    elif rules:
        schema["allOf"] = rules
    required = set(schema.get("required", ()))
    for name, prop in schema.get("properties", {}).items():
        if name in required or _nullable(prop):
            continue
        annotations = {k: prop.pop(k) for k in ("title", "description", "default") if k in prop}
        schema["properties"][name] = {"anyOf": [prop, NULL], **annotations}


def _nullable(prop: dict[str, Any]) -> bool:
    return prop.get("type") == "null" or any(_nullable(branch) for branch in prop.get("anyOf", ()))


def _is_none(value: object) -> bool:
    return value is None


def omitted_if_none(**kwargs: Any) -> Any:
    """A field that defaults to None and is left out of the JSON when None, as OpenAI leaves
    out `role` after the first stream chunk, `usage` on every chunk but the last, `name`, ..."""
    return Field(default=None, exclude_if=_is_none, **kwargs)


BRANCH_MARK = "~"


def branch(name: str) -> str:
    """The tag of a union branch chosen by a callable discriminator. Validation errors name the
    tag in their location; the mark lets the server leave it out of the parameter it names."""
    return BRANCH_MARK + name


def text_or_object(value: Any) -> str:
    """The branch (`text` or `object`) of a `str | SomeModel` field that a JSON value belongs to,
    for a callable discriminator: only that branch is validated, so an error names what is wrong
    with the object that was sent rather than saying that it is not a string."""
    return branch("object" if isinstance(value, (dict, BaseModel)) else "text")


def text_or_list(value: Any) -> str:
    """The branch (`text` or `list`) of a `str | list[...]` field that a JSON value belongs to."""
    return branch("text" if isinstance(value, str) else "list")


class ResponseModel(BaseModel):
    """Base of every response body: unknown fields are kept, not rejected.

    `request_id` is filled in by the SDK from the `x-request-id` header (by setting
    `_request_id`). It describes the call, not the data: it is not part of the JSON
    body, of equality, of copies or of pickles. It is kept in a slot rather than a
    pydantic private attribute, which would cost pydantic an extra call for every
    object it validates (about a third of the time to parse a streamed chunk).
    """

    model_config = ConfigDict(extra="allow", protected_namespaces=())

    # Not annotated, even for type checkers: they would read an annotation as a field that
    # every constructor call must pass (`Model(id=...)` would not type-check).
    __slots__ = ("_request_id",)

    @property
    def request_id(self) -> str | None:
        """The server's `x-request-id` for the call that produced this object."""
        return getattr(self, "_request_id", None)


class RequestModel(BaseModel):
    """Base of every request body: unknown fields are an error naming the field.

    An explicit `null` for a known field means "the default", as it does for OpenAI (clients
    such as langchain send `"logprobs": null` on every call). Fields named in `IGNORED` are
    documented OpenAI parameters the server accepts without acting on them; it names the ones
    a request set in the `x-maas-ignored-params` response header.
    """

    model_config = ConfigDict(extra="forbid", protected_namespaces=(), json_schema_extra=_request_schema)
    IGNORED: ClassVar[tuple[str, ...]] = ()
    # JSON Schema keywords added to the model's schema: the rules across its fields that the
    # server enforces, so that the OpenAPI document holds them too.
    SCHEMA_RULES: ClassVar[dict[str, Any]] = {}

    @model_validator(mode="before")
    @classmethod
    def _null_means_default(cls, data: Any) -> Any:
        if isinstance(data, dict) and None in data.values():
            return {k: v for k, v in data.items() if v is not None or k not in cls.model_fields}
        return data

    def ignored_params(self) -> list[str]:
        """The `IGNORED` parameters this request set (to a value other than null)."""
        found = [name for name in self.IGNORED if getattr(self, name, None) is not None]
        for name in type(self).model_fields:
            value = getattr(self, name, None)
            if isinstance(value, RequestModel):
                found += [f"{name}.{inner}" for inner in value.ignored_params()]
        return found


ItemT = TypeVar("ItemT")


class ListPage(ResponseModel, Generic[ItemT]):
    """OpenAI's list object: one page of `data`, newest first; `has_more` while more follow (the
    next page starts `after` the last item's id)."""

    object: str = "list"
    data: list[ItemT]
    has_more: bool = False


class CursorPage(ResponseModel, Generic[ItemT]):
    """A list page that also names the ids of its first and last items (OpenAI's batches and
    input items), in OpenAI's field order."""

    object: str = "list"
    data: list[ItemT]
    first_id: str | None = None
    last_id: str | None = None
    has_more: bool = False


class Usage(ResponseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


class StreamOptions(RequestModel):
    IGNORED = ("include_obfuscation",)

    include_usage: bool = False
    include_obfuscation: bool | None = Field(default=None, description="Accepted and ignored.")


class ErrorDetail(ResponseModel):
    message: str
    type: str = "invalid_request_error"
    param: str | None = None
    code: str | None = None


class ErrorBody(ResponseModel):
    """`{"error": {"message", "type", "param", "code"}}`, as OpenAI and vLLM send it."""

    error: ErrorDetail
