"""Each API operation described once, as a `Call`, for both the sync and the async client.

Parameters left out or given as None are not sent, so the server's defaults apply.
Pydantic models given as parameters (`ChatMessage`, `Hyperparameters`, ...) are sent
as their JSON form; plain dicts are sent as they are.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar, cast
from urllib.parse import quote

from pydantic import BaseModel
from typing_extensions import Unpack

from maas_sdk import protocol as wire
from maas_sdk._core import Call, StreamCall
from maas_sdk._pagination import ListBody
from maas_sdk._response_format import ParsedResponse, response_tool_param, text_format_param
from maas_sdk._tools import ParsedChatCompletion, response_format_param, tool_param
from maas_sdk._types import (
    ChatParams,
    ClassificationInput,
    CompletionParams,
    EmbeddingInput,
    EncodingFormat,
    FileInput,
    FineTuningParams,
    JSONBody,
    MessageParam,
    Prompt,
    RequestOptions,
    ResponseFormatParam,
    ResponseInputParam,
    ResponseParams,
    SamplingParams,
    TimeParam,
    UsageParams,
)

R = TypeVar("R")
T = TypeVar("T")

_OPTION_KEYS = ("extra_headers", "extra_query", "extra_body", "timeout")


def _segment(value: str) -> str:
    """An id as one URL path segment."""
    if not value:
        raise ValueError("an id must not be empty")
    return quote(value, safe="")


def _plain(value: object) -> object:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", exclude_none=True)
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


def _body(values: Mapping[str, object]) -> JSONBody:
    return {key: _plain(value) for key, value in values.items() if value is not None}


def _wire(
    options: RequestOptions,
    *,
    json: JSONBody | None = None,
    form: dict[str, object] | None = None,
    query: Mapping[str, object] | None = None,
) -> dict[str, Any]:
    """The `Call` fields that carry the body, query, headers and timeout, with the caller's extras merged."""
    extra_body = options.get("extra_body")
    if extra_body:
        if form is not None:
            form = {**form, **extra_body}
        else:
            json = {**(json or {}), **extra_body}
    extra_query = options.get("extra_query")
    if extra_query:
        query = {**(query or {}), **extra_query}
    return {
        "json": json,
        "form": form,
        "query": {key: value for key, value in query.items() if value is not None} if query else None,
        "headers": options.get("extra_headers"),
        "timeout": options.get("timeout"),
    }


def _split(params: Mapping[str, Any]) -> tuple[RequestOptions, dict[str, Any]]:
    """An operation's keyword arguments as (request options, body parameters)."""
    values = dict(params)
    options = cast(RequestOptions, {key: values.pop(key) for key in _OPTION_KEYS if key in values})
    return options, values


def _call(method: str, path: str, response_type: type[R], options: RequestOptions, **wire: Any) -> Call[R]:
    return Call(method=method, path=path, response_type=response_type, **_wire(options, **wire))


def _sampling(
    path: str,
    body: JSONBody,
    params: SamplingParams,
    stream: bool,
    response_type: type[R],
    chunk_type: type[T],
) -> StreamCall[R, T]:
    options, values = _split(params)
    include_usage = values.pop("include_usage", None)
    body.update(_body(values))
    if include_usage is not None:
        current = body.get("stream_options")
        body["stream_options"] = {**(current if isinstance(current, dict) else {}), "include_usage": include_usage}
    if stream:
        body["stream"] = True
    return StreamCall(
        method="POST", path=path, response_type=response_type, chunk_type=chunk_type, **_wire(options, json=body)
    )


def completion(
    prompt: Prompt, *, model: str, stream: bool, **params: Unpack[CompletionParams]
) -> StreamCall[wire.Generation, wire.GenerationChunk]:
    body: JSONBody = {"model": model, "prompt": prompt}
    return _sampling("/completions", body, params, stream, wire.Generation, wire.GenerationChunk)


def chat_completion(
    messages: Sequence[MessageParam],
    *,
    model: str,
    stream: bool,
    response_format: ResponseFormatParam | None = None,
    **params: Unpack[ChatParams],
) -> StreamCall[Any, wire.ChatCompletionChunk]:
    """`response_format` may be a pydantic model: the answer is then a `ParsedChatCompletion` of it."""
    body: JSONBody = {"model": model, "messages": [_plain(m) if isinstance(m, BaseModel) else dict(m) for m in messages]}
    tools = params.pop("tools", None)
    if tools is not None:
        body["tools"] = [tool_param(t) for t in tools]
    response_type: type[Any] = wire.ChatCompletion
    if response_format is not None:
        body["response_format"], parse_into = response_format_param(response_format)
        if parse_into is not None:
            response_type = ParsedChatCompletion[parse_into]  # type: ignore[valid-type]
    return _sampling("/chat/completions", body, params, stream, response_type, wire.ChatCompletionChunk)


def score(
    prompt: str, continuation: str, *, model: str, options: RequestOptions
) -> Call[wire.Generation]:
    """The completion that scores `continuation` after `prompt` without generating (see `_scoring`)."""
    if not prompt:
        raise ValueError("prompt must not be empty: the first token of a text has no logprob")
    if not continuation:
        raise ValueError("continuation must not be empty")
    return completion(prompt + continuation, model=model, stream=False, echo=True, max_tokens=0, logprobs=1,
                      **options)


def embeddings(
    input: EmbeddingInput,
    *,
    model: str,
    encoding_format: EncodingFormat | None,
    dimensions: int | None,
    options: RequestOptions,
) -> Call[wire.Embeddings]:
    body = _body({"model": model, "input": input, "encoding_format": encoding_format, "dimensions": dimensions})
    return _call("POST", "/embeddings", wire.Embeddings, options, json=body)


def classifications(
    input: ClassificationInput, *, model: str, labels: Sequence[str] | None, options: RequestOptions
) -> Call[wire.Classifications]:
    sent = input if isinstance(input, str) else [_plain(item) for item in input]
    body = _body({"model": model, "input": sent, "labels": labels})
    return _call("POST", "/classifications", wire.Classifications, options, json=body)


def rerank(
    query: str,
    documents: Sequence[str],
    *,
    model: str,
    top_n: int | None,
    return_documents: bool | None,
    max_tokens_per_doc: int | None,
    options: RequestOptions,
) -> Call[wire.Reranking]:
    if isinstance(documents, str):
        raise TypeError("documents must be a sequence of texts, not one text")
    body = _body({"model": model, "query": query, "documents": list(documents), "top_n": top_n,
                  "return_documents": return_documents, "max_tokens_per_doc": max_tokens_per_doc})
    return _call("POST", "/rerank", wire.Reranking, options, json=body)


def tokenize(
    text: str, *, model: str, add_special_tokens: bool | None, options: RequestOptions
) -> Call[wire.Tokenized]:
    body = _body({"model": model, "text": text, "add_special_tokens": add_special_tokens})
    return _call("POST", "/tokenize", wire.Tokenized, options, json=body)


def detokenize(tokens: Sequence[int], *, model: str, options: RequestOptions) -> Call[wire.Detokenized]:
    return _call("POST", "/detokenize", wire.Detokenized, options, json={"model": model, "tokens": list(tokens)})


def evaluation(*, model: str, file: str, options: RequestOptions) -> Call[wire.Evaluation]:
    return _call("POST", "/evaluations", wire.Evaluation, options, json={"model": model, "file": file})


def list_models(options: RequestOptions) -> Call[ListBody[wire.Model]]:
    return _call("GET", "/models", ListBody[wire.Model], options)


def retrieve_model(model: str, options: RequestOptions) -> Call[wire.Model]:
    return _call("GET", f"/models/{_segment(model)}", wire.Model, options)


def _file_content(file: FileInput, filename: str | None) -> tuple[str, bytes]:
    if isinstance(file, bytes):
        return filename or "upload.jsonl", file
    if isinstance(file, (str, os.PathLike)):
        path = Path(file)
        return filename or path.name, path.read_bytes()
    name = getattr(file, "name", None)
    return filename or (os.path.basename(name) if isinstance(name, str) else "upload.jsonl"), file.read()


def upload_file(
    file: FileInput, *, purpose: str, filename: str | None, options: RequestOptions
) -> Call[wire.FileObject]:
    name, content = _file_content(file, filename)
    return Call(
        method="POST",
        path="/files",
        response_type=wire.FileObject,
        files={"file": (name, content, "application/octet-stream")},
        **_wire(options, form={"purpose": purpose}),
    )


def list_files(
    *, purpose: str | None, limit: int | None, after: str | None, order: str | None, options: RequestOptions
) -> Call[ListBody[wire.FileObject]]:
    query = {"purpose": purpose, "limit": limit, "after": after, "order": order}
    return _call("GET", "/files", ListBody[wire.FileObject], options, query=query)


def retrieve_file(file_id: str, options: RequestOptions) -> Call[wire.FileObject]:
    return _call("GET", f"/files/{_segment(file_id)}", wire.FileObject, options)


def file_content(file_id: str, options: RequestOptions) -> Call[bytes]:
    return _call("GET", f"/files/{_segment(file_id)}/content", bytes, options)


def delete_file(file_id: str, options: RequestOptions) -> Call[wire.FileDeleted]:
    return _call("DELETE", f"/files/{_segment(file_id)}", wire.FileDeleted, options)


def create_job(
    job_type: type[R], *, model: str, training_file: str, **params: Unpack[FineTuningParams]
) -> Call[R]:
    options, values = _split(params)
    body = _body({"model": model, "training_file": training_file, **values})
    return _call("POST", "/fine_tuning/jobs", job_type, options, json=body)


def list_jobs(
    body_type: type[ListBody[T]], *, limit: int | None, after: str | None, options: RequestOptions
) -> Call[ListBody[T]]:
    return _call("GET", "/fine_tuning/jobs", body_type, options, query={"limit": limit, "after": after})


def retrieve_job(job_type: type[R], job_id: str, options: RequestOptions) -> Call[R]:
    return _call("GET", f"/fine_tuning/jobs/{_segment(job_id)}", job_type, options)


def cancel_job(job_type: type[R], job_id: str, options: RequestOptions) -> Call[R]:
    return _call("POST", f"/fine_tuning/jobs/{_segment(job_id)}/cancel", job_type, options)


def job_events(
    job_id: str, *, limit: int | None, after: str | None, options: RequestOptions
) -> Call[ListBody[wire.FineTuningEvent]]:
    path = f"/fine_tuning/jobs/{_segment(job_id)}/events"
    return _call("GET", path, ListBody[wire.FineTuningEvent], options, query={"limit": limit, "after": after})


def job_checkpoints(
    job_id: str, *, limit: int | None, after: str | None, options: RequestOptions
) -> Call[ListBody[wire.FineTuningCheckpoint]]:
    path = f"/fine_tuning/jobs/{_segment(job_id)}/checkpoints"
    return _call("GET", path, ListBody[wire.FineTuningCheckpoint], options, query={"limit": limit, "after": after})


def create_batch(
    batch_type: type[R], *, input_file_id: str, endpoint: str, completion_window: str,
    metadata: Mapping[str, str] | None, options: RequestOptions,
) -> Call[R]:
    body = _body({"input_file_id": input_file_id, "endpoint": endpoint, "completion_window": completion_window,
                  "metadata": dict(metadata) if metadata is not None else None})
    return _call("POST", "/batches", batch_type, options, json=body)


def list_batches(
    body_type: type[ListBody[T]], *, limit: int | None, after: str | None, options: RequestOptions
) -> Call[ListBody[T]]:
    return _call("GET", "/batches", body_type, options, query={"limit": limit, "after": after})


def retrieve_batch(batch_type: type[R], batch_id: str, options: RequestOptions) -> Call[R]:
    return _call("GET", f"/batches/{_segment(batch_id)}", batch_type, options)


def cancel_batch(batch_type: type[R], batch_id: str, options: RequestOptions) -> Call[R]:
    return _call("POST", f"/batches/{_segment(batch_id)}/cancel", batch_type, options)


def _seconds(value: TimeParam) -> int:
    return int(value.timestamp()) if isinstance(value, datetime) else value


def usage(*, start_time: TimeParam, **params: Unpack[UsageParams]) -> Call[wire.UsagePage[wire.UsageResult]]:
    options, values = _split(params)
    end_time = values.pop("end_time", None)
    query = {"start_time": _seconds(start_time), "end_time": None if end_time is None else _seconds(end_time),
             **{key: list(value) if isinstance(value, (list, tuple)) else value for key, value in values.items()}}
    return _call("GET", "/usage", wire.UsagePage[wire.UsageResult], options, query=query)


def create_response(
    *, model: str, input: ResponseInputParam | None, stream: bool, text_format: type[BaseModel] | None = None,
    **params: Unpack[ResponseParams],
) -> StreamCall[Any, wire.ResponseStreamEvent]:
    """`text_format` (a pydantic model) sets `text.format` to its schema; the answer is then a
    `ParsedResponse` of it."""
    options, values = _split(params)
    tools = values.pop("tools", None)
    body: JSONBody = {"model": model, "input": input if isinstance(input, str) or input is None
                      else [_plain(item) if isinstance(item, BaseModel) else dict(item) for item in input]}
    if tools is not None:
        body["tools"] = [response_tool_param(t) for t in tools]
    response_type: type[Any] = wire.Response
    if text_format is not None:
        values["text"] = {**(values.get("text") or {}), **text_format_param(text_format)}
        response_type = ParsedResponse[text_format]  # type: ignore[valid-type]
    body.update(_body(values))
    if stream:
        body["stream"] = True
    return StreamCall(method="POST", path="/responses", response_type=response_type,
                      chunk_type=wire.ResponseStreamEvent, **_wire(options, json=_body(body)))


def retrieve_response(response_id: str, options: RequestOptions) -> Call[wire.Response]:
    return _call("GET", f"/responses/{_segment(response_id)}", wire.Response, options)


def delete_response(response_id: str, options: RequestOptions) -> Call[wire.ResponseDeleted]:
    return _call("DELETE", f"/responses/{_segment(response_id)}", wire.ResponseDeleted, options)


def response_input_items(
    response_id: str, *, limit: int | None, after: str | None, order: str | None, options: RequestOptions
) -> Call[ListBody[wire.ResponseInputItem]]:
    path = f"/responses/{_segment(response_id)}/input_items"
    query = {"limit": limit, "after": after, "order": order}
    return _call("GET", path, ListBody[wire.ResponseInputItem], options, query=query)
