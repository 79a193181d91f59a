"""Our extensions: classification, tokenization and evaluation."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from maas_sdk.protocol.common import NOT_BLANK, RequestModel, ResponseModel, Usage, server_limit, token_ids

_TEXT: dict[str, Any] = {"type": "string", "pattern": NOT_BLANK}
MAX_LABELS = 64


class ClassificationRequest(RequestModel):
    model: str = Field(min_length=1)
    input: str | list[str] = Field(json_schema_extra={"anyOf": [
        _TEXT, {"type": "array", "items": _TEXT, "minItems": 1, **server_limit(maxItems="embed_max_inputs")}]})
    labels: list[str] | None = Field(
        default=None, description="Candidate labels for zero-shot classification with any model (distinct once "
                                  "trimmed).",
        json_schema_extra={"items": _TEXT, "minItems": 2, "maxItems": MAX_LABELS, "uniqueItems": True},
    )


class Classification(ResponseModel):
    index: int
    label: str
    score: float
    scores: dict[str, float]


class Classifications(ResponseModel):
    """`.data[i]` is the result for input i; `.labels` the top label per input."""

    object: str = "list"
    model: str
    data: list[Classification]
    usage: Usage | None = None

    @property
    def labels(self) -> list[str]:
        return [item.label for item in sorted(self.data, key=lambda c: c.index)]


class TokenizeRequest(RequestModel):
    model: str = Field(min_length=1)
    text: str
    add_special_tokens: bool = True


class Tokenized(ResponseModel):
    model: str
    tokens: list[int]
    token_strings: list[str] = Field(default_factory=list)
    count: int
    max_model_len: int | None = None


class DetokenizeRequest(RequestModel):
    model: str = Field(min_length=1)
    tokens: list[int] = Field(json_schema_extra=token_ids())


class Detokenized(ResponseModel):
    model: str
    text: str


class EvaluationRequest(RequestModel):
    model: str = Field(min_length=1)
    file: str = Field(min_length=1)


class Evaluation(ResponseModel):
    """`.metrics`: `accuracy` and `f1` (macro) for classifiers; `loss` and `perplexity` for generators."""

    object: str = "evaluation"
    model: str
    file: str
    metrics: dict[str, float]
    num_examples: int
