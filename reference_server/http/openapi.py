"""`GET /openapi.json`: the OpenAPI 3.1 document of every route, built from the wire models.

`OPERATIONS` is the one table from routes to the pydantic models of `maas_sdk.protocol`
they read and answer, so the document cannot drift from what the server and the SDK
validate. The test suite checks that every route of the app appears here (and nothing
else), and fuzzes the running server against the document.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from maas_sdk import protocol as p
from maas_sdk._version import __version__

Mode = Literal["validation", "serialization"]
REF = "#/components/schemas/{model}"

ERROR_MEANINGS: dict[int, str] = {
    400: "A parameter is missing or invalid (named in `error.param`), or the body is not a JSON object.",
    401: "The API key is missing or wrong.",
    403: "The API key may not use this model.",
    404: "No such model, file, job or route.",
    409: "The resource is in a state that does not allow this.",
    413: "The body or upload is larger than the server accepts.",
    429: "Rate limit reached or the queue is full; retry after `Retry-After` seconds.",
    500: "The server failed; the body names no file and shows no stack.",
    503: "The server is loading its models or shutting down; retry after `Retry-After` seconds.",
}
RETRY_AFTER = {
    "description": "Whole seconds to wait before retrying.",
    "required": True,
    "schema": {"type": "string", "pattern": "^[0-9]+$"},
}


@dataclass(frozen=True)
class Param:
    """A path, query or header parameter."""

    name: str
    location: Literal["path", "query", "header"]
    schema: dict[str, Any]
    description: str = ""


@dataclass(frozen=True)
class Operation:
    """One route: its body model, its answer, the errors it can give.

    `stream` names the chunk model of the `text/event-stream` answer sent when the body
    says `"stream": true`; `multipart` describes a form upload instead of a JSON body;
    `raw` is the media type of a non-JSON answer; `redirect` the address a 307 answer points to.
    """

    method: str
    path: str
    summary: str
    request: type[BaseModel] | None = None
    response: type[BaseModel] | None = None
    response_schema: dict[str, Any] | None = None
    stream: type[BaseModel] | None = None
    multipart: dict[str, Any] | None = None
    raw: str | None = None
    redirect: str | None = None
    params: tuple[Param, ...] = ()
    errors: tuple[int, ...] = ()
    example: dict[str, Any] | None = None
    tags: tuple[str, ...] = field(default_factory=tuple)

    @property
    def authenticated(self) -> bool:
        return self.path.startswith("/v1")


def _path(name: str, what: str) -> Param:
    return Param(name, "path", {"type": "string"}, f"The {what}'s id.")


def _page(maximum: int) -> tuple[Param, ...]:
    return (
        Param("after", "query", {"type": "string"}, "Start after this id (from the previous page)."),
        Param("limit", "query", {"type": "integer", "minimum": 1, "maximum": maximum}, "Page size."),
    )


GENERATOR = "smollm2-135m-instruct"
EMBEDDER = "all-minilm-l6-v2"
_STATUS = {"type": "object", "properties": {"status": {"type": "string"}}, "required": ["status"]}
_READY = {
    "type": "object",
    "properties": {"status": {"const": "ready"}, "models": {"type": "array", "items": {"type": "string"}}},
    "required": ["status", "models"],
}
_BODY = (400, 403, 404, 413)
_FILE = _path("file_id", "file")
_JOB = _path("job_id", "fine-tuning job")
_UPLOAD = {
    "type": "object",
    "properties": {
        "file": {"type": "string", "format": "binary", "description": "JSONL data: chat, prompt/completion "
                 "or classification records."},
        "purpose": {"type": "string", "enum": ["fine-tune", "evals"]},
    },
    "required": ["file", "purpose"],
}

OPERATIONS: tuple[Operation, ...] = (
    Operation("GET", "/health", "Liveness: answers as soon as the process serves HTTP.",
              response_schema=_STATUS, tags=("server",)),
    Operation("GET", "/ready", "Readiness: 200 once every model is loaded, 503 while loading or draining.",
              response_schema=_READY, errors=(503,), tags=("server",)),
    Operation("GET", "/metrics", "Prometheus metrics.", raw="text/plain", tags=("server",)),
    Operation("GET", "/openapi.json", "This document.", response_schema={"type": "object"}, tags=("server",)),
    Operation("GET", "/", "The playground's address (when MAAS_PLAYGROUND is on).", redirect="/playground",
              tags=("playground",)),
    Operation("GET", "/playground", "The browser playground: chat, embeddings and tokenizer views.",
              raw="text/html", tags=("playground",)),
    Operation("GET", "/playground/{name}", "One of the playground's static assets.", raw="text/plain",
              params=(Param("name", "path", {"type": "string"}, "The asset's file name."),), errors=(404,),
              tags=("playground",)),
    Operation("GET", "/v1/models", "List the models this API key may use.", response=p.ModelList,
              tags=("models",)),
    Operation("GET", "/v1/models/{model_id}", "Describe one model.", response=p.Model,
              params=(_path("model_id", "model"),), errors=(403, 404), tags=("models",)),
    Operation("POST", "/v1/completions", "Generate text from a prompt.", request=p.CompletionRequest,
              response=p.Generation, stream=p.GenerationChunk, errors=_BODY, tags=("generation",),
              example={"model": GENERATOR, "prompt": "The capital of France is", "max_tokens": 4}),
    Operation("POST", "/v1/chat/completions", "Generate the next message of a conversation.",
              request=p.ChatCompletionRequest, response=p.ChatCompletion, stream=p.ChatCompletionChunk,
              errors=_BODY, tags=("generation",),
              example={"model": GENERATOR, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}),
    Operation("POST", "/v1/embeddings", "Embed texts as vectors.", request=p.EmbeddingRequest,
              response=p.Embeddings, errors=_BODY, tags=("embeddings",),
              example={"model": EMBEDDER, "input": ["hello", "world"]}),
    Operation("POST", "/v1/classifications", "Classify texts: a trained classifier's labels, or zero-shot "
              "among `labels` with any model.", request=p.ClassificationRequest, response=p.Classifications,
              errors=_BODY, tags=("nlu",),
              example={"model": EMBEDDER, "input": ["I loved it"], "labels": ["positive", "negative"]}),
    Operation("POST", "/v1/tokenize", "Split a text into a model's tokens.", request=p.TokenizeRequest,
              response=p.Tokenized, errors=_BODY, tags=("nlu",),
              example={"model": GENERATOR, "text": "Hello world"}),
    Operation("POST", "/v1/detokenize", "Turn token ids back into text.", request=p.DetokenizeRequest,
              response=p.Detokenized, errors=_BODY, tags=("nlu",),
              example={"model": GENERATOR, "tokens": [19556, 905]}),
    Operation("POST", "/v1/evaluations", "Measure a model on a labelled file of yours.",
              request=p.EvaluationRequest, response=p.Evaluation, errors=_BODY, tags=("nlu",)),
    Operation("POST", "/v1/files", "Upload a JSONL data file.", multipart=_UPLOAD, response=p.FileObject,
              errors=(400, 413), tags=("files",)),
    Operation("GET", "/v1/files", "List your files, newest first unless `order=asc`.", response=p.FileList,
              params=(Param("purpose", "query", {"type": "string", "enum": ["fine-tune", "evals"]}),
                      Param("order", "query", {"type": "string", "enum": ["asc", "desc"]}),
                      *_page(10000)),
              errors=(400,), tags=("files",)),
    Operation("GET", "/v1/files/{file_id}", "Describe one of your files.", response=p.FileObject,
              params=(_FILE,), errors=(404,), tags=("files",)),
    Operation("GET", "/v1/files/{file_id}/content", "Download a file's bytes as uploaded.",
              raw="application/jsonl", params=(_FILE,), errors=(404,), tags=("files",)),
    Operation("DELETE", "/v1/files/{file_id}", "Delete one of your files.", response=p.FileDeleted,
              params=(_FILE,), errors=(404,), tags=("files",)),
    Operation("POST", "/v1/fine_tuning/jobs", "Start a fine-tuning job.", request=p.FineTuningJobCreate,
              response=p.FineTuningJob, errors=_BODY, tags=("fine-tuning",),
              params=(Param("Idempotency-Key", "header", {"type": "string", "minLength": 1, "maxLength": 255},
                            "A retry with the same key returns the job the first request created."),)),
    Operation("GET", "/v1/fine_tuning/jobs", "List your fine-tuning jobs, newest first.",
              response=p.FineTuningJobList, params=_page(100), errors=(400,), tags=("fine-tuning",)),
    Operation("GET", "/v1/fine_tuning/jobs/{job_id}", "Describe one of your jobs.", response=p.FineTuningJob,
              params=(_JOB,), errors=(404,), tags=("fine-tuning",)),
    Operation("POST", "/v1/fine_tuning/jobs/{job_id}/cancel", "Cancel a job that has not finished.",
              response=p.FineTuningJob, params=(_JOB,), errors=(400, 404), tags=("fine-tuning",)),
    Operation("GET", "/v1/fine_tuning/jobs/{job_id}/events", "A job's events, newest first.",
              response=p.FineTuningEventList, params=(_JOB, *_page(1000)), errors=(400, 404),
              tags=("fine-tuning",)),
    Operation("GET", "/v1/fine_tuning/jobs/{job_id}/checkpoints", "A job's checkpoints, newest first.",
              response=p.FineTuningCheckpointList, params=(_JOB, *_page(100)), errors=(400, 404),
              tags=("fine-tuning",)),
)


def _body_models(operations: Sequence[Operation]) -> list[tuple[type[BaseModel], Mode]]:
    pairs: list[tuple[type[BaseModel], Mode]] = [(p.ErrorBody, "serialization")]
    for op in operations:
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


def _event_schema(chunk_ref: dict[str, Any], error_ref: dict[str, Any]) -> dict[str, Any]:
    """One server-sent event of a stream (sent when the body says `"stream": true`)."""
    return {
        "type": "object",
        "description": "`data: <chunk JSON>` events, then `data: [DONE]`. An error after the stream has "
                       "started arrives as `data: {\"error\": {...}}`, then `data: [DONE]`.",
        "properties": {
            "event": {"const": "message"},
            "data": {"type": "string", "contentMediaType": "application/json",
                     "contentSchema": {"anyOf": [chunk_ref, error_ref]}},
        },
        "required": ["data"],
    }


def _operation(op: Operation, refs: dict[tuple[type[BaseModel], Mode], dict[str, Any]]) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "operationId": op.method.lower() + op.path.replace("/", "_").replace("{", "").replace("}", "")
        .replace(".", "_"),
        "summary": op.summary,
        "tags": list(op.tags),
    }
    error_ref = refs[(p.ErrorBody, "serialization")]
    if op.params:
        doc["parameters"] = [
            {"name": param.name, "in": param.location, "required": param.location == "path",
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
        content[op.raw] = {"schema": {"type": "string"}}
    elif op.response is not None:
        content["application/json"] = {"schema": refs[(op.response, "serialization")]}
    elif op.response_schema is not None:
        content["application/json"] = {"schema": op.response_schema}
    if op.stream is not None:
        content["text/event-stream"] = {"schema": _event_schema(refs[(op.stream, "serialization")], error_ref)}
    if op.redirect is not None:
        doc["responses"] = {"307": {"description": f"Redirect to {op.redirect}.",
                                    "headers": {"location": {"schema": {"type": "string"}}}}}
        return doc
    doc["responses"] = {"200": {"description": "Success.", "content": content}, **_error_responses(op, error_ref)}
    if op.authenticated:
        doc["security"] = [{"bearerAuth": []}]
    return doc


@functools.lru_cache(maxsize=1)
def openapi_document() -> dict[str, Any]:
    """The document, built once per process."""
    refs, defs = models_json_schema(_body_models(OPERATIONS), ref_template=REF)
    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        paths.setdefault(op.path, {})[op.method.lower()] = _operation(op, refs)
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


async def openapi_endpoint(request: Request) -> Response:
    return JSONResponse(openapi_document())


routes = [Route("/openapi.json", openapi_endpoint, methods=["GET"])]
