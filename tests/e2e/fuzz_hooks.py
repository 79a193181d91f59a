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
- file ids in bodies: a file uploaded before the run (`MAAS_FUZZ_CHAT_FILE`); uploads: a valid
  JSONL file; a fresh `Idempotency-Key` (one already used for another body is refused);
- the embedder's `dimensions`, and labels for zero-shot classification (it has no trained ones).

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
    "/v1/evaluations", "/v1/fine_tuning/jobs",
})
EMBEDDER_ROUTES = frozenset({"/v1/embeddings", "/v1/classifications"})
CHAT_LINE = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Arr, hello."}]}
STREAM_CHUNK: dict[str, type[BaseModel]] = {op.path: op.stream for op in OPERATIONS if op.stream is not None}


def _number(value: Any) -> float | None:
    """A JSON number (`2` or `2.0`), or None for anything else."""
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _fixture_file() -> str:
    return os.environ["MAAS_FUZZ_CHAT_FILE"]


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
                tool["function"]["parameters"] = {"type": "object"}
        choice = body.get("tool_choice")
        if isinstance(choice, dict):
            choice["function"]["name"] = tools[0]["function"]["name"]
        if choice != "none":
            body["response_format"] = body["structured_outputs"] = None


@schemathesis.hook
def map_case(context: Any, case: Any) -> Any:
    path = case.operation.path
    if case.operation.method.upper() == "DELETE" and case.path_parameters.get("file_id") == _fixture_file():
        case.path_parameters["file_id"] = "file-deleted-by-no-one"  # the run's data file stays
    body = case.body
    if not _positive(case) or not isinstance(body, dict):
        return case
    # vLLM's root routes take no model as well as one; the others need it.
    if (path in GENERATOR_ROUTES or path in EMBEDDER_ROUTES) and (
            "model" in body or path not in ("/tokenize", "/detokenize")):
        body["model"] = GENERATOR if path in GENERATOR_ROUTES else EMBEDDER
    if path in ("/v1/completions", "/v1/chat/completions"):
        _generation(body)
    elif path in ("/detokenize", "/v1/detokenize") and isinstance(body.get("tokens"), list):
        body["tokens"] = _fold(body["tokens"], GENERATOR_VOCABULARY)
    elif path == "/v1/embeddings":
        if isinstance(body.get("input"), list):
            body["input"] = _fold_prompt(body["input"], EMBEDDER_VOCABULARY, EMBEDDER_MAX_TOKENS)
        if body.get("dimensions") is not None:
            body["dimensions"] = EMBEDDER_DIMENSIONS
    elif path == "/v1/classifications":
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
    elif path == "/v1/files" and "file" in body:
        body["file"] = (json.dumps(CHAT_LINE) + "\n").encode()
    return case


@schemathesis.check
def stream_events_conform(ctx: Any, response: Any, case: Any) -> bool | None:
    """Each event of a stream is a chunk of the operation's model or an error, then `[DONE]`."""
    if not response.headers.get("content-type", [""])[0].startswith("text/event-stream"):
        return None
    chunk_model = STREAM_CHUNK[case.operation.path]
    events = [line[len("data: "):] for line in response.text.split("\n") if line.startswith("data: ")]
    assert events and events[-1] == "[DONE]", f"the stream does not end with [DONE]: {response.text[-300:]}"
    for data in events[:-1]:
        payload = json.loads(data)
        (ErrorBody if "error" in payload else chunk_model).model_validate(payload)
    return True
