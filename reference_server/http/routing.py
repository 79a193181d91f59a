"""The route table: each operation is declared once, beside its handler, with what the OpenAPI
document says of it (summary, request and response models, parameters, errors).

    table = RouteTable("files")

    @table.route("GET", "/v1/files/{file_id}", "Describe one of your files.", response=p.FileObject,
                 params=(path_param("file_id", "file"),), errors=(404,))
    async def retrieve_file(request: Request) -> Response: ...

`reference_server.app` mounts the tables' routes and `openapi` documents their operations, so
what is served and what is documented are the same list.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

Endpoint = Callable[[Request], Awaitable[Response]]
V1 = "/v1"
# Routes that sit at the root (where vLLM's and Cohere's clients look for them) but need a key
# like `/v1`: vLLM's tokenizer, rerank and score; Cohere's v2 rerank.
KEYED_ROOT_PATHS = frozenset({"/tokenize", "/detokenize", "/tokenizer_info", "/rerank", "/score", "/v2/rerank"})
# Errors a body-taking `/v1` operation can answer besides those of every `/v1` operation.
BODY_ERRORS = (400, 403, 404, 408, 413, 415)


@dataclass(frozen=True)
class Param:
    """A path, query or header parameter."""

    name: str
    location: Literal["path", "query", "header"]
    schema: dict[str, Any]
    description: str = ""
    required: bool = False  # path parameters always are


@dataclass(frozen=True)
class Link:
    """An OpenAPI link: the operation `target` (`"GET /v1/files/{file_id}"`) takes `parameters`
    from this operation's answer (`{"file_id": "$response.body#/id"}`), as a client chains them."""

    target: str
    parameters: tuple[tuple[str, str], ...]


def link(target: str, **parameters: str) -> Link:
    return Link(target, tuple(parameters.items()))


@dataclass(frozen=True)
class Operation:
    """One route: its handler, body model, its answer, the errors it can give.

    `path` may carry Starlette converters (`{model_id:path}`); `doc_path` is the OpenAPI form.
    `stream` names the chunk model of the `text/event-stream` answer sent when the body says
    `"stream": true` (`named_events`: each event is named by its `type`, as Anthropic sends
    them, rather than OpenAI's bare `data:` lines); `multipart` describes a form upload instead
    of a JSON body; `raw` is the media type (or types) of a non-JSON answer; `redirect` the
    address a 307 answer points to; `error_body` the error shape when it is not OpenAI's; `links`
    the operations that take an id from the answer.
    """

    method: str
    path: str
    summary: str
    endpoint: Endpoint
    request: type[BaseModel] | None = None
    response: type[BaseModel] | None = None
    response_schema: dict[str, Any] | None = None
    stream: type[BaseModel] | None = None
    named_events: bool = False
    error_body: type[BaseModel] | None = None
    multipart: dict[str, Any] | None = None
    raw: str | tuple[str, ...] | None = None
    redirect: str | None = None
    params: tuple[Param, ...] = ()
    errors: tuple[int, ...] = ()
    example: dict[str, Any] | None = None
    links: tuple[Link, ...] = ()
    tags: tuple[str, ...] = field(default_factory=tuple)

    @property
    def authenticated(self) -> bool:
        return self.path.startswith(V1) or self.path in KEYED_ROOT_PATHS

    @property
    def doc_path(self) -> str:
        return re.sub(r"\{(\w+):\w+\}", r"{\1}", self.path)


class RouteTable:
    """The operations of one route module, in declaration order."""

    def __init__(self, tag: str) -> None:
        self.tag = tag
        self.operations: list[Operation] = []

    def route(self, method: str, path: str, summary: str, **spec: Any) -> Callable[[Endpoint], Endpoint]:
        def declare(endpoint: Endpoint) -> Endpoint:
            self.operations.append(Operation(method, path, summary, endpoint, tags=(self.tag,), **spec))
            return endpoint

        return declare


def routes_of(operations: Sequence[Operation], prefix: str = "") -> list[Route]:
    """Starlette routes for `operations`, their paths relative to the mount at `prefix`.

    Operations that share a path share one route, which hands each method to its handler: a
    405 on that path then lists every method it serves in `Allow`, not those of one handler.
    """
    by_path: dict[str, dict[str, Endpoint]] = {}
    for op in operations:
        by_path.setdefault(op.path, {})[op.method] = op.endpoint
    return [Route(path.removeprefix(prefix) or "/", _by_method(handlers), methods=list(handlers))
            for path, handlers in by_path.items()]


def _by_method(handlers: dict[str, Endpoint]) -> Endpoint:
    if len(handlers) == 1:
        return next(iter(handlers.values()))

    async def endpoint(request: Request) -> Response:
        return await handlers["GET" if request.method == "HEAD" else request.method](request)

    return endpoint


def path_param(name: str, what: str) -> Param:
    return Param(name, "path", {"type": "string"}, f"The {what}'s id.")


def page_params(maximum: int) -> tuple[Param, ...]:
    return (
        Param("after", "query", {"type": "string", "minLength": 1},
              "Start after this id (from the previous page); an id that names nothing is a 404."),
        Param("limit", "query", {"type": "integer", "minimum": 1, "maximum": maximum}, "Page size."),
    )
