"""`POST /v1/chat/completions`: generation from a list of messages, using the model's chat template."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from maas_sdk.protocol.common import RequestModel, ResponseModel, Usage
from maas_sdk.protocol.completions import FinishReason, SamplingFields
from maas_sdk.protocol.structured import StructuredFields, ToolCall, ToolCallDelta, ToolFields


class TextPart(RequestModel):
    type: Literal["text"]
    text: str


class ChatMessage(ResponseModel):
    """A chat message. Used in requests and responses, so unknown fields are kept."""

    role: Literal["system", "user", "assistant", "developer", "tool"]
    content: str | list[TextPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class ChatCompletionRequest(SamplingFields, StructuredFields, ToolFields):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)


class ChatChoice(ResponseModel):
    index: int = 0
    message: ChatMessage
    finish_reason: FinishReason | None = None
    logprobs: None = None


class ChatCompletion(ResponseModel):
    """A chat completion. `.text` is the assistant's reply in the first choice."""

    id: str
    object: str = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage | None = None

    @property
    def text(self) -> str:
        return self.choices[0].message.text() if self.choices else ""

    @property
    def finish_reason(self) -> str | None:
        return self.choices[0].finish_reason if self.choices else None


class ChatDelta(ResponseModel):
    role: str | None = None
    content: str | None = None
    tool_calls: list[ToolCallDelta] | None = None


class ChunkChatChoice(ResponseModel):
    index: int = 0
    delta: ChatDelta
    finish_reason: FinishReason | None = None


class ChatCompletionChunk(ResponseModel):
    """One streamed piece of a chat completion. `.text` is its content delta ("" if none)."""

    id: str
    object: str = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChatChoice]
    usage: Usage | None = None

    @property
    def text(self) -> str:
        if not self.choices:
            return ""
        return self.choices[0].delta.content or ""

    @property
    def finish_reason(self) -> str | None:
        return self.choices[0].finish_reason if self.choices else None
