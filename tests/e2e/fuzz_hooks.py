"""Schemathesis hooks for the fuzz run of `test_fuzz.py` (loaded through `SCHEMATHESIS_HOOKS`).

The OpenAPI document carries every rule that holds whatever the server holds. What no document
can say is which data exist: which model serves which route, how large its vocabulary is, which
files were uploaded. Like schemathesis' own `parameters` configuration, these hooks put real
data into the requests generated as valid (`positive`) ones; requests generated as invalid are
left as they are, so they still must be refused.

- `model`: the default generator or embedder, whichever the route needs;
- token ids: folded into the model's vocabulary, and token lists cut to what it takes;
- `min_tokens` at most `max_tokens`, `best_of` at least `n` (and not streamed beyond it): numbers
  compared across fields, which JSON Schema cannot do;
- grammars and JSON schemas for constrained decoding: ones that compile (the document names the
  keyword subset; whether a grammar parses, no schema can say), a named tool that is offered;
- file ids in bodies: files uploaded before the run (`MAAS_FUZZ_CHAT_FILE`, and
  `MAAS_FUZZ_BATCH_FILE` of chat completion requests); uploads: a valid JSONL file; a fresh
  `Idempotency-Key` (one already used for another body is refused);
- the embedder's `dimensions`, and labels for zero-shot classification (it has no trained ones,
  nor a head for text pairs); one text_1 to score against every text_2, or as many;
- usage: an end after the start, a page size its bucket width allows, no page cursor;
- no previous_response_id (no response is stored before the run); a Messages conversation that
  ends with a user turn (this server does not continue a prefilled reply).

Besides, every `text/event-stream` answer is checked event by event against the chunk model
of its operation (`stream_events_conform`).
"""

from __future__ import annotations

import json
import os
import uuid
from typing import Any

import schemathesis
from pydantic import BaseModel

from maas_sdk.protocol import ErrorBody
from reference_server.http.routes import OPERATIONS
from tests.constants import EMBEDDER, GENERATOR

GENERATOR_VOCABULARY = 49152
EMBEDDER_VOCABULARY = 30522
EMBEDDER_DIMENSIONS = 384
EMBEDDER_MAX_TOKENS = 256
# The routes whose `model` is a generator; the others named here take the embedder.
GENERATOR_ROUTES = frozenset({
    "/v1/completions", "/v1/chat/completions", "/v1/tokenize", "/v1/detokenize", "/tokenize", "/detokenize",
    "/v1/evaluations", "/v1/fine_tuning/jobs", "/v1/responses", "/v1/messages", "/v1/messages/count_tokens",
})
EMBEDDER_ROUTES = frozenset({"/v1/embeddings", "/v1/classifications", "/v1/rerank", "/rerank", "/v2/rerank",
                             "/score", "/v1/score"})
NAMED_EVENTS = frozenset(op.path for op in OPERATIONS if op.named_events)
CHAT_LINE = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Arr, hello."}]}
BATCH_LINE = {"custom_id": "1", "method": "POST", "url": "/v1/chat/completions",
              "body": {"model": GENERATOR, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1}}
USAGE_PAGE_SIZES = {"1m": 1440, "1h": 168, "1d": 31}
OBJECT = {"type": "object"}
STREAM_CHUNK: dict[str, type[BaseModel]] = {op.path: op.stream for op in OPERATIONS if op.stream is not None}


def _number(value: Any) -> float | None:
    """A JSON number (`2` or `2.0`), or None for anything else."""
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _integer(value: Any) -> int | None:
    """A query parameter's integer, sent as a number or as its text."""
    if isinstance(value, str) and value.isdigit():
        return int(value)
    number = _number(value)
    return int(number) if number is not None else None


def _fixture_file() -> str:
    return os.environ["MAAS_FUZZ_CHAT_FILE"]


def _fixture_files() -> set[str]:
    return {os.environ["MAAS_FUZZ_CHAT_FILE"], os.environ["MAAS_FUZZ_BATCH_FILE"]}


def _positive(case: Any) -> bool:
    meta = case.meta
    return meta is None or meta.generation.mode.is_positive


def _fold(ids: list[Any], vocabulary: int, longest: int | None = None) -> list[Any]:
    """Token ids (integers, or floats that are integers: `36.0`) taken modulo the vocabulary."""
    folded = [int(i) % vocabulary if isinstance(i, (int, float)) and not isinstance(i, bool) and float(i).is_integer()
              else i for i in ids]
    return folded[:longest] if longest is not None else folded


def _fold_prompt(prompt: Any, vocabulary: int, longest: int | None = None) -> Any:
    if isinstance(prompt, list) and prompt and all(isinstance(p, list) for p in prompt):
        return [_fold(p, vocabulary, longest) for p in prompt]
    if isinstance(prompt, list) and all(isinstance(p, (int, float)) for p in prompt):
        return _fold(prompt, vocabulary, longest)
    return prompt


def _generation(body: dict[str, Any]) -> None:
    if isinstance(body.get("prompt"), list):
        body["prompt"] = _fold_prompt(body["prompt"], GENERATOR_VOCABULARY)
    if isinstance(body.get("stop_token_ids"), list):
        body["stop_token_ids"] = _fold(body["stop_token_ids"], GENERATOR_VOCABULARY)
    if isinstance(body.get("logit_bias"), dict):
        body["logit_bias"] = {str(int(k) % GENERATOR_VOCABULARY) if k.isdigit() else k: v
                              for k, v in body["logit_bias"].items()}
    cap = _number(body.get("max_completion_tokens")) or _number(body.get("max_tokens"))
    if cap is not None and (_number(body.get("min_tokens")) or 0) > cap:
        body["min_tokens"] = cap
    n = _number(body.get("n")) or 1
    best_of = _number(body.get("best_of"))
    if best_of is not None and (best_of < n or body.get("stream") is True):
        body["best_of"] = n
    _constraints(body)


def _constraints(body: dict[str, Any]) -> None:
    """Grammars and schemas that compile; one way to constrain the output, as the route takes it."""
    so = body.get("structured_outputs")
    if isinstance(so, dict):
        for key, value in {"json": {"type": "object"}, "regex": "[a-z]{1,3}", "grammar": 'root ::= "yes" | "no"'}.items():
            if so.get(key) is not None:
                so[key] = value
    fmt = body.get("response_format")
    if isinstance(fmt, dict):
        if isinstance(fmt.get("json_schema"), dict):
            fmt["json_schema"]["schema"] = {"type": "object"}
        if fmt.get("schema") is not None:
            fmt["schema"] = {"type": "object"}
        if so is not None and fmt.get("type") != "text":
            body["response_format"] = None
    tools = body.get("tools")
    if isinstance(tools, list) and tools:
        for tool in tools:
            if isinstance(tool.get("function"), dict) and tool["function"].get("parameters") is not None:
                tool["function"]["parameters"] = OBJECT
        choice = body.get("tool_choice")
        if isinstance(choice, dict):
            choice["function"]["name"] = tools[0]["function"]["name"]
        if choice != "none":
            body["response_format"] = body["structured_outputs"] = None


def _responses(body: dict[str, Any]) -> None:
    if body.get("previous_response_id") is not None:
        body["previous_response_id"] = None
        if body.get("input") is None:
            body["input"] = "Hi"
    fmt = (body.get("text") or {}).get("format") if isinstance(body.get("text"), dict) else None
    if isinstance(fmt, dict) and fmt.get("schema") is not None:
        fmt["schema"] = OBJECT
    tools = body.get("tools")
    if isinstance(tools, list) and tools:
        for tool in tools:
            if tool.get("parameters") is not None:
                tool["parameters"] = OBJECT
        if isinstance(body.get("tool_choice"), dict):
            body["tool_choice"]["name"] = tools[0]["name"]


def _messages(body: dict[str, Any]) -> None:
    turns = body.get("messages")
    if isinstance(turns, list) and turns and turns[-1].get("role") != "user":  # no prefilled reply
        turns.append({"role": "user", "content": "Hi"})
    output = body.get("output_config")
    if isinstance(output, dict) and isinstance(output.get("format"), dict):
        output["format"]["schema"] = OBJECT
    tools = body.get("tools")
    if isinstance(tools, list) and tools:
        for tool in tools:
            tool["input_schema"] = OBJECT
        choice = body.get("tool_choice")
        if isinstance(choice, dict) and choice.get("type") == "tool":
            choice["name"] = tools[0]["name"]


def _usage(query: dict[str, Any]) -> None:
    query.pop("page", None)
    start, end = _integer(query.get("start_time")), _integer(query.get("end_time"))
    if start is not None and end is not None and end <= start:
        query["end_time"] = int(start) + 1
    most = USAGE_PAGE_SIZES.get(query.get("bucket_width") or "1d", 31)
    if (_integer(query.get("limit")) or 0) > most:
        query["limit"] = most


@schemathesis.hook
def map_case(context: Any, case: Any) -> Any:
    path = case.operation.path
    if case.operation.method.upper() == "DELETE" and case.path_parameters.get("file_id") in _fixture_files():
        case.path_parameters["file_id"] = "file-deleted-by-no-one"  # the run's data files stay
    body = case.body
    if _positive(case) and path.startswith(("/v1/usage", "/v1/organization/usage")) and case.query:
        _usage(case.query)
    if not _positive(case) or not isinstance(body, dict):
        return case
    # vLLM's root routes take no model as well as one; the others need it.
    if (path in GENERATOR_ROUTES or path in EMBEDDER_ROUTES) and (
            "model" in body or path not in ("/tokenize", "/detokenize")):
        body["model"] = GENERATOR if path in GENERATOR_ROUTES else EMBEDDER
    if path in ("/v1/completions", "/v1/chat/completions"):
        _generation(body)
    elif path == "/v1/responses":
        _responses(body)
    elif path in ("/v1/messages", "/v1/messages/count_tokens"):
        _messages(body)
    elif path in ("/score", "/v1/score") and isinstance(body.get("text_1"), list):
        seconds = len(body["text_2"]) if isinstance(body.get("text_2"), list) else 1
        if len(body["text_1"]) not in (1, seconds):
            body["text_1"] = body["text_1"][:1]
    elif path in ("/detokenize", "/v1/detokenize") and isinstance(body.get("tokens"), list):
        body["tokens"] = _fold(body["tokens"], GENERATOR_VOCABULARY)
    elif path == "/v1/embeddings":
        if isinstance(body.get("input"), list):
            body["input"] = _fold_prompt(body["input"], EMBEDDER_VOCABULARY, EMBEDDER_MAX_TOKENS)
        if body.get("dimensions") is not None:
            body["dimensions"] = EMBEDDER_DIMENSIONS
    elif path == "/v1/classifications":
        if isinstance(body.get("input"), list):
            body["input"] = [item["text"] if isinstance(item, dict) else item for item in body["input"]]
        labels = body.get("labels")
        trimmed = [label.strip() for label in labels] if isinstance(labels, list) else []
        if len(set(trimmed)) != len(trimmed) or labels is None:  # distinct once trimmed, and given
            body["labels"] = ["positive", "negative"]
    elif path == "/v1/evaluations":
        body["file"] = _fixture_file()
    elif path == "/v1/fine_tuning/jobs":
        body["training_file"] = _fixture_file()
        if body.get("validation_file") is not None:
            body["validation_file"] = _fixture_file()
        if case.headers and "Idempotency-Key" in case.headers:
            case.headers["Idempotency-Key"] = uuid.uuid4().hex
    elif path == "/v1/batches":
        body["input_file_id"] = os.environ["MAAS_FUZZ_BATCH_FILE"]
        body["endpoint"] = "/v1/chat/completions"
    elif path == "/v1/files" and "file" in body:
        line = BATCH_LINE if body.get("purpose") == "batch" else CHAT_LINE
        body["file"] = (json.dumps(line) + "\n").encode()
    return case


@schemathesis.hook
def before_add_examples(context: Any, examples: list[Any]) -> None:
    """The document's examples name data too (a file id, a model): the same real data."""
    for case in examples:
        map_case(context, case)


@schemathesis.check
def stream_events_conform(ctx: Any, response: Any, case: Any) -> bool | None:
    """Each event of a stream is a chunk of the operation's model or an error, then `[DONE]`."""
    if not response.headers.get("content-type", [""])[0].startswith("text/event-stream"):
        return None
    chunk_model = STREAM_CHUNK[case.operation.path]
    if case.operation.path in NAMED_EVENTS:  # Anthropic's: each event named by its type, the last ends it
        frames = [frame.split("\n") for frame in response.text.split("\n\n") if frame]
        for event_line, data_line in frames:
            event = chunk_model.model_validate_json(data_line.removeprefix("data: ")).model_dump()
            assert event_line == f"event: {event['type']}", frames
        assert frames and frames[-1][0] in ("event: message_stop", "event: error"), response.text[-300:]
        return True
    events = [line[len("data: "):] for line in response.text.split("\n") if line.startswith("data: ")]
    assert events and events[-1] == "[DONE]", f"the stream does not end with [DONE]: {response.text[-300:]}"
    for data in events[:-1]:
        payload = json.loads(data)
        (ErrorBody if "error" in payload else chunk_model).model_validate(payload)
    return True
