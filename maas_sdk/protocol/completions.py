"""`POST /v1/completions`: text generation from a raw prompt."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from maas_sdk.protocol.common import RequestModel, ResponseModel, StreamOptions, Usage
from maas_sdk.protocol.structured import StructuredFields

FinishReason = Literal["stop", "length", "tool_calls"]


class SamplingFields(RequestModel):
    """Sampling parameters shared by completions and chat completions."""

    model: str = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float = Field(default=1.0, ge=0.0, le=2.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    top_k: int | None = Field(default=None, ge=0, description="0 or null disables top-k filtering.")
    stop: str | list[str] | None = Field(default=None, description="Up to 4 stop sequences.")
    seed: int | None = Field(default=None, ge=0, le=2**63 - 1)
    n: int = Field(default=1, ge=1, le=1, description="Only n=1 is supported.")
    stream: bool = False
    stream_options: StreamOptions | None = None
    presence_penalty: float = Field(default=0.0, ge=-2.0, le=2.0)
    frequency_penalty: float = Field(default=0.0, ge=-2.0, le=2.0)
    min_tokens: int = Field(default=0, ge=0, description="Suppress end-of-sequence before this many tokens.")
    ignore_eos: bool = Field(default=False, description="Keep generating past end-of-sequence.")
    user: str | None = None


class CompletionRequest(SamplingFields, StructuredFields):
    prompt: str | list[str]
    echo: bool = False


class CompletionChoice(ResponseModel):
    index: int = 0
    text: str = ""
    finish_reason: FinishReason | None = None
    logprobs: None = None


class Generation(ResponseModel):
    """A completion: `object == "text_completion"`. `.text` is the first choice's text."""

    id: str
    object: str = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage | None = None

    @property
    def text(self) -> str:
        return self.choices[0].text if self.choices else ""

    @property
    def finish_reason(self) -> str | None:
        return self.choices[0].finish_reason if self.choices else None


class GenerationChunk(Generation):
    """One streamed piece of a completion; the last may carry only `usage`."""
