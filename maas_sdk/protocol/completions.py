"""`POST /v1/completions`: text generation from a raw prompt (text or token ids)."""

from __future__ import annotations

from typing import Any, ClassVar, Generic, Literal, TypeVar

from pydantic import Field

from maas_sdk.protocol.common import (
    RequestModel,
    ResponseModel,
    StreamOptions,
    Usage,
    omitted_if_none,
    server_limit,
    token_ids,
)
from maas_sdk.protocol.logprobs import CompletionLogprobs
from maas_sdk.protocol.structured import StructuredFields

# The reasons OpenAI and vLLM give; other servers may send others, so any string is accepted.
FinishReason = Literal["stop", "length", "tool_calls", "content_filter", "function_call"] | str
MAX_LOGPROBS = 20
MAX_STOP_SEQUENCES = 16


class SamplingFields(RequestModel):
    """Sampling parameters shared by completions and chat completions.

    Beyond OpenAI's: `top_k`, `min_p`, `repetition_penalty`, `min_tokens`, `ignore_eos` and
    `stop_token_ids`, as vLLM names them.
    """

    model: str = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=0, json_schema_extra=server_limit(maximum="max_tokens_limit"))
    temperature: float = Field(default=1.0, ge=0.0, le=2.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    top_k: int | None = Field(default=None, ge=-1, description="0, -1 or null disables top-k filtering.")
    min_p: float = Field(default=0.0, ge=0.0, le=1.0,
                         description="Drop tokens less likely than min_p times the most likely one.")
    stop: str | list[str] | None = Field(default=None, description=f"Up to {MAX_STOP_SEQUENCES} stop sequences.",
                                         json_schema_extra={"minLength": 1, "items": {"minLength": 1},
                                                            "maxItems": MAX_STOP_SEQUENCES})
    stop_token_ids: list[int] | None = Field(default=None, description="Token ids that end the sequence.",
                                             json_schema_extra={"items": {"minimum": 0}})
    seed: int | None = Field(default=None, ge=-(2**63), le=2**64 - 1)
    n: int = Field(default=1, ge=1, description="Choices to generate (up to the server's max_n).",
                   json_schema_extra=server_limit(maximum="max_n"))
    stream: bool = False
    stream_options: StreamOptions | None = None
    presence_penalty: float = Field(default=0.0, ge=-2.0, le=2.0)
    frequency_penalty: float = Field(default=0.0, ge=-2.0, le=2.0)
    repetition_penalty: float = Field(default=1.0, gt=0.0, le=10.0,
                                      description="Divide the logits of tokens already seen (prompt or output).")
    logit_bias: dict[str, float] | None = Field(
        default=None, description="Token id -> bias in [-100, 100].",
        json_schema_extra={"propertyNames": {"pattern": "^[0-9]+$"},
                           "additionalProperties": {"minimum": -100, "maximum": 100}})
    min_tokens: int = Field(default=0, ge=0, description="Suppress end-of-sequence before this many tokens "
                            "(at most max_tokens).", json_schema_extra=server_limit(maximum="max_tokens_limit"))
    ignore_eos: bool = Field(default=False, description="Keep generating past end-of-sequence.")
    user: str | None = Field(default=None, description="Accepted and ignored.")


class CompletionRequest(SamplingFields, StructuredFields):
    IGNORED = ("suffix", "user")
    SCHEMA_RULES: ClassVar[dict[str, Any]] = {
        "if": {"properties": {"max_tokens": {"const": 0}}, "required": ["max_tokens"]},
        "then": {"properties": {"echo": {"const": True}, "logprobs": {"type": "integer"}},
                 "required": ["echo", "logprobs"]},
    }

    prompt: str | list[str] | list[int] | list[list[int]] = Field(json_schema_extra={"anyOf": [
        {"type": "string", "minLength": 1},
        {"type": "array", "items": {"type": "string", "minLength": 1}, "minItems": 1,
         **server_limit(maxItems="max_prompts")},
        token_ids(min_items=1),
        {"type": "array", "items": token_ids(min_items=1), "minItems": 1, **server_limit(maxItems="max_prompts")},
    ]})
    echo: bool = Field(default=False, description="Return the prompt (and, with logprobs, its logprobs) too.")
    logprobs: int | None = Field(default=None, ge=0, le=MAX_LOGPROBS,
                                 description="Return the logprobs of each token and of this many alternatives.")
    best_of: int | None = Field(default=None, ge=1, json_schema_extra=server_limit(maximum="max_n"),
                                description="Generate this many (at least n; not streamed when more than n), "
                                            "return the n with the highest logprob.")
    suffix: Any = Field(default=None, description="Accepted and ignored.")


class CompletionChoice(ResponseModel):
    index: int = 0
    text: str = ""
    finish_reason: FinishReason | None = None
    logprobs: CompletionLogprobs | None = None


ChoiceT = TypeVar("ChoiceT")


class CompletionEnvelope(ResponseModel, Generic[ChoiceT]):
    """What a completion, a chat completion and a chat chunk hold around their choices, in
    OpenAI's field order; each kind names its `object`."""

    id: str
    object: str
    created: int
    model: str
    choices: list[ChoiceT]
    system_fingerprint: str | None = omitted_if_none()
    usage: Usage | None = omitted_if_none()


class Generation(CompletionEnvelope[CompletionChoice]):
    """A completion: `object == "text_completion"`. `.text` is the first choice's text."""

    object: str = "text_completion"

    @property
    def text(self) -> str:
        return self.choices[0].text if self.choices else ""

    @property
    def finish_reason(self) -> str | None:
        return self.choices[0].finish_reason if self.choices else None


class GenerationChunk(Generation):
    """One streamed piece of a completion; the last may carry only `usage`."""
