"""Token log-probabilities, in the two shapes OpenAI uses.

Completions use the legacy parallel lists (`tokens`, `token_logprobs`, `top_logprobs` as
token -> logprob maps, `text_offset`); chat completions use one object per token with its
UTF-8 `bytes` and a ranked list of alternatives.
"""

from __future__ import annotations

from pydantic import Field

from maas_sdk.protocol.common import ResponseModel


class CompletionLogprobs(ResponseModel):
    """`choices[].logprobs` of a completion. With `echo`, the prompt's tokens come first and the
    first token's logprob (and alternatives) are null: nothing precedes it."""

    tokens: list[str] = Field(default_factory=list)
    token_logprobs: list[float | None] = Field(default_factory=list)
    top_logprobs: list[dict[str, float] | None] | None = Field(default_factory=list)
    text_offset: list[int] = Field(default_factory=list)


class TopLogprob(ResponseModel):
    token: str
    logprob: float
    bytes: list[int] | None = None


class ChatTokenLogprob(TopLogprob):
    """One generated token of a chat completion and its most likely alternatives."""

    top_logprobs: list[TopLogprob] = Field(default_factory=list)


class ChatChoiceLogprobs(ResponseModel):
    """`choices[].logprobs` of a chat completion (or of one streamed chunk)."""

    content: list[ChatTokenLogprob] | None = None
    refusal: list[ChatTokenLogprob] | None = None
