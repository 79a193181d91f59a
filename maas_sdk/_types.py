"""Parameter types shared by the sync and async clients.

The optional parameters of each operation are declared once, as a `TypedDict`
used through `**params: Unpack[...]`: editors list them in signature help, type
checkers check them, and the two clients cannot drift apart. A parameter left
out (or given as None) is not sent, so the server's default applies.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import IO, Any, Literal

import httpx
from pydantic import BaseModel
from typing_extensions import TypedDict

from maas_sdk._tools import ToolParam
from maas_sdk.protocol import ChatMessage, FineTuneMethod, Hyperparameters, StreamOptions, TextPair
from maas_sdk.protocol.vocabulary import UsageKind

__all__ = [
    "BucketWidth",
    "ChatParams",
    "ClassificationInput",
    "ClientOptions",
    "CompletionParams",
    "EmbeddingInput",
    "EncodingFormat",
    "FileInput",
    "FineTuningParams",
    "JSONBody",
    "MessageParam",
    "Prompt",
    "RequestOptions",
    "ResponseFormatParam",
    "ResponseInputParam",
    "ResponseParams",
    "SamplingParams",
    "StopParam",
    "TimeParam",
    "TimeoutParam",
    "ToolChoiceParam",
    "ToolParam",
    "ToolRunParams",
    "UsageGroup",
    "UsageParams",
]

TimeoutParam = float | httpx.Timeout | None
# Text, texts, token ids, or lists of token ids (one prompt each).
Prompt = str | list[str] | list[int] | list[list[int]]
EmbeddingInput = str | list[str] | list[int] | list[list[int]]
EncodingFormat = Literal["float", "base64"]
# Texts, or text pairs (`TextPair` or `{"text": ..., "text_pair": ...}`) for a classifier
# fine-tuned on pairs.
ClassificationInput = str | Sequence[str] | Sequence[TextPair | Mapping[str, str]]
BucketWidth = Literal["1m", "1h", "1d"]
UsageGroup = Literal["model", "kind"]
# A point in time for the usage calls: Unix seconds, or a datetime (naive ones are local time).
TimeParam = int | datetime
StopParam = str | Sequence[str] | None
MessageParam = ChatMessage | Mapping[str, Any]
FileInput = str | os.PathLike[str] | bytes | IO[bytes]
JSONBody = dict[str, object]
ToolChoiceParam = Literal["none", "auto", "required"] | Mapping[str, object]
# A pydantic model class (the reply is parsed into it) or a dict in OpenAI's shape.
ResponseFormatParam = type[BaseModel] | Mapping[str, object]
# Responses API input: text, or items as dicts or models (an earlier response's output items).
ResponseInputParam = str | Sequence[Mapping[str, Any] | BaseModel]


class ClientOptions(TypedDict, total=False):
    """What `with_options()` can change on a client copy."""

    api_key: str | None
    base_url: str | httpx.URL | None
    timeout: float | httpx.Timeout | None
    max_retries: int | None
    default_headers: Mapping[str, str] | None


class RequestOptions(TypedDict, total=False):
    """Accepted by every call, for what the typed parameters do not cover.

    `extra_headers` are added to (and override) the request's headers,
    `extra_query` to its query string, `extra_body` to its JSON body (or form
    fields, for uploads); `timeout` replaces the client's for this call (None keeps
    the client's; `httpx.Timeout(None)` waits forever).
    """

    extra_headers: Mapping[str, str] | None
    extra_query: Mapping[str, object] | None
    extra_body: Mapping[str, object] | None
    timeout: TimeoutParam


class SamplingParams(RequestOptions, total=False):
    """Sampling parameters shared by `generate()` and `chat()`.

    `n` asks for that many choices (`.choices`; `.text` is the first one's). `logit_bias`
    maps token ids (as strings, as OpenAI's API does) to a bias added to their logits.
    `top_k`, `min_p`, `repetition_penalty`, `min_tokens`, `ignore_eos` and
    `stop_token_ids` are vLLM's extensions, under vLLM's names.
    `include_usage=True` is a shorthand for `stream_options={"include_usage": True}`:
    the last streamed chunk then carries the token usage.
    """

    max_tokens: int | None
    n: int | None
    temperature: float | None
    top_p: float | None
    top_k: int | None
    min_p: float | None
    stop: StopParam
    stop_token_ids: Sequence[int] | None
    seed: int | None
    presence_penalty: float | None
    frequency_penalty: float | None
    repetition_penalty: float | None
    logit_bias: Mapping[str, float] | None
    min_tokens: int | None
    ignore_eos: bool | None
    stream_options: StreamOptions | Mapping[str, object] | None
    include_usage: bool | None
    user: str | None


class ToolRunParams(SamplingParams, total=False):
    """`run_tools()`'s parameters: `chat()`'s, less `tools` (given as Python functions)."""

    max_completion_tokens: int | None
    tool_choice: ToolChoiceParam | None
    parallel_tool_calls: bool | None


class CompletionParams(SamplingParams, total=False):
    """`generate()`'s parameters: the sampling ones, and the legacy completion ones.

    `echo` prepends the prompt to the text; `logprobs=k` returns each token's logprob and
    the `k` most likely alternatives (`choices[].logprobs`: `tokens`, `token_logprobs`,
    `top_logprobs`, `text_offset`); with `echo`, the prompt's tokens too, and
    `max_tokens=0` then scores the prompt without generating. `best_of` generates that
    many and returns the `n` most likely.
    """

    echo: bool | None
    logprobs: int | None
    best_of: int | None
    response_format: Mapping[str, object] | None
    structured_outputs: Mapping[str, object] | None


class ChatParams(SamplingParams, total=False):
    """`chat()`'s parameters: the sampling ones, `max_completion_tokens` (OpenAI's newer name),
    `top_logprobs` alternatives per token; and tools: dicts in OpenAI's shape, pydantic models or
    Python functions with type hints."""

    max_completion_tokens: int | None
    logprobs: bool | None
    top_logprobs: int | None
    tools: Sequence[ToolParam] | None
    tool_choice: ToolChoiceParam | None
    parallel_tool_calls: bool | None
    structured_outputs: Mapping[str, object] | None


class FineTuningParams(RequestOptions, total=False):
    """`fine_tuning.jobs.create()`'s optional parameters; models or plain dicts for the nested ones."""

    validation_file: str | None
    hyperparameters: Hyperparameters | Mapping[str, object] | None
    method: FineTuneMethod | Mapping[str, object] | None
    suffix: str | None
    seed: int | None


class UsageParams(RequestOptions, total=False):
    """`usage()`'s optional parameters (see `GET /v1/usage`)."""

    end_time: TimeParam | None
    bucket_width: BucketWidth | None
    group_by: Sequence[UsageGroup] | None
    models: Sequence[str] | None
    kinds: Sequence[UsageKind] | None
    limit: int | None
    page: str | None


class ResponseParams(RequestOptions, total=False):
    """`responses.create()`'s optional parameters, as OpenAI's Responses API names them.

    `tools` are dicts (in the Responses shape, `{"type": "function", "name", "parameters"}`, or the
    Chat Completions one), pydantic models or Python functions with type hints; `text` is
    `{"format": {...}}` (or give a pydantic model as `text_format` to `parse()` / `stream()`).
    `seed` is this server's extension, as in `chat()`: the same seed and parameters, the same output.
    `include=["message.output_text.logprobs"]` returns the text's logprobs (`top_logprobs`
    alternatives per token) in its `output_text` parts.
    """

    instructions: str | None
    max_output_tokens: int | None
    temperature: float | None
    top_p: float | None
    seed: int | None
    tools: Sequence[ToolParam] | None
    tool_choice: ToolChoiceParam | None
    parallel_tool_calls: bool | None
    text: Mapping[str, object] | None
    metadata: Mapping[str, str] | None
    store: bool | None
    previous_response_id: str | None
    truncation: Literal["auto", "disabled"] | None
    include: Sequence[str] | None
    top_logprobs: int | None
    user: str | None
