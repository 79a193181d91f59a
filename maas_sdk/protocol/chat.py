"""`POST /v1/chat/completions`: generation from a list of messages, using the model's chat template."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import ConfigDict, Field

from maas_sdk.protocol.common import RequestModel, ResponseModel, omitted_if_none, server_limit
from maas_sdk.protocol.completions import MAX_LOGPROBS, CompletionEnvelope, FinishReason, SamplingFields
from maas_sdk.protocol.logprobs import ChatChoiceLogprobs
from maas_sdk.protocol.structured import StructuredFields, ToolCall, ToolCallDelta, ToolFields


class TextPart(RequestModel):
    type: Literal["text"]
    text: str


class ChatMessage(ResponseModel):
    """A chat message. Used in requests and responses, so unknown fields are kept. Only an
    assistant's message may go without `content` (it may hold tool calls instead)."""

    model_config = ConfigDict(json_schema_extra={"anyOf": [
        {"properties": {"role": {"const": "assistant"}}},
        {"properties": {"content": {"not": {"type": "null"}}}, "required": ["content"]},
    ]})

    role: Literal["system", "user", "assistant", "developer", "tool"]
    content: str | list[TextPart] | None = None
    name: str | None = omitted_if_none()
    tool_calls: list[ToolCall] | None = omitted_if_none()
    tool_call_id: str | None = omitted_if_none()

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


def _ignored(**kwargs: Any) -> Any:
    return Field(default=None, description="Accepted and ignored.", **kwargs)


class ChatCompletionRequest(SamplingFields, StructuredFields, ToolFields):
    """A chat completion request. Every documented OpenAI field is understood: those in
    `IGNORED` are accepted and reported back in the `x-maas-ignored-params` header."""

    IGNORED = ("store", "metadata", "service_tier", "modalities", "audio", "prediction", "reasoning_effort",
               "verbosity", "web_search_options", "prompt_cache_key", "prompt_cache_retention",
               "safety_identifier", "user")
    SCHEMA_RULES: ClassVar[dict[str, Any]] = {
        "if": {"properties": {"top_logprobs": {"type": "integer"}}, "required": ["top_logprobs"]},
        "then": {"properties": {"logprobs": {"const": True}}, "required": ["logprobs"]},
    }

    messages: list[ChatMessage] = Field(min_length=1)
    # A chat reply has at least one token: 0 scores a prompt, which only completions do.
    max_tokens: int | None = Field(default=None, ge=0, json_schema_extra={
        "minimum": 1, **server_limit(maximum="max_tokens_limit")})
    max_completion_tokens: int | None = Field(default=None, ge=1,
                                              json_schema_extra=server_limit(maximum="max_tokens_limit"))
    logprobs: bool = Field(default=False, description="Return the logprob of each generated token.")
    top_logprobs: int | None = Field(default=None, ge=0, le=MAX_LOGPROBS,
                                     description="With logprobs: this many most likely alternatives per token.")
    store: bool | None = _ignored()
    metadata: dict[str, str] | None = _ignored()
    service_tier: str | None = _ignored()
    modalities: list[str] | None = _ignored()
    audio: dict[str, Any] | None = _ignored()
    prediction: dict[str, Any] | None = _ignored()
    reasoning_effort: str | None = _ignored()
    verbosity: str | None = _ignored()
    web_search_options: dict[str, Any] | None = _ignored()
    prompt_cache_key: str | None = _ignored()
    prompt_cache_retention: str | None = _ignored()
    safety_identifier: str | None = _ignored()


class ChatChoice(ResponseModel):
    index: int = 0
    message: ChatMessage
    finish_reason: FinishReason | None = None
    logprobs: ChatChoiceLogprobs | None = None


class ChatCompletion(CompletionEnvelope[ChatChoice]):
    """A chat completion. `.text` is the assistant's reply in the first choice."""

    object: str = "chat.completion"

    @property
    def text(self) -> str:
        return self.choices[0].message.text() if self.choices else ""

    @property
    def finish_reason(self) -> str | None:
        return self.choices[0].finish_reason if self.choices else None


class ChatDelta(ResponseModel):
    """What a chunk adds: `role` on a choice's first chunk only, `content` when there is text."""

    role: str | None = omitted_if_none()
    content: str | None = omitted_if_none()
    tool_calls: list[ToolCallDelta] | None = omitted_if_none()


class ChunkChatChoice(ResponseModel):
    index: int = 0
    delta: ChatDelta
    finish_reason: FinishReason | None = None
    logprobs: ChatChoiceLogprobs | None = None


class ChatCompletionChunk(CompletionEnvelope[ChunkChatChoice]):
    """One streamed piece of a chat completion. `.text` is its content delta ("" if none)."""

    object: str = "chat.completion.chunk"

    @property
    def text(self) -> str:
        if not self.choices:
            return ""
        return self.choices[0].delta.content or ""

    @property
    def finish_reason(self) -> str | None:
        return self.choices[0].finish_reason if self.choices else None
