"""`POST /v1/chat/completions`: generation from a list of messages, using the model's chat template."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from maas_sdk.protocol.common import RequestModel, ResponseModel, Usage, omitted_if_none
from maas_sdk.protocol.completions import MAX_LOGPROBS, FinishReason, SamplingFields
from maas_sdk.protocol.logprobs import ChatChoiceLogprobs
from maas_sdk.protocol.structured import StructuredFields, ToolCall, ToolCallDelta, ToolFields


class TextPart(RequestModel):
    type: Literal["text"]
    text: str


class ChatMessage(ResponseModel):
    """A chat message. Used in requests and responses, so unknown fields are kept."""

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

    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
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


class ChatCompletion(ResponseModel):
    """A chat completion. `.text` is the assistant's reply in the first choice."""

    id: str
    object: str = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    system_fingerprint: str | None = omitted_if_none()
    usage: Usage | None = omitted_if_none()

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


class ChatCompletionChunk(ResponseModel):
    """One streamed piece of a chat completion. `.text` is its content delta ("" if none)."""

    id: str
    object: str = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChatChoice]
    system_fingerprint: str | None = omitted_if_none()
    usage: Usage | None = omitted_if_none()

    @property
    def text(self) -> str:
        if not self.choices:
            return ""
        return self.choices[0].delta.content or ""

    @property
    def finish_reason(self) -> str | None:
        return self.choices[0].finish_reason if self.choices else None
