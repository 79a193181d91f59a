"""Our extensions: classification, tokenization and evaluation."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Discriminator, Field, Tag

from maas_sdk.protocol.common import (
    TEXT,
    RequestModel,
    ResponseModel,
    Usage,
    branch,
    server_limit,
    text_or_list,
    text_or_object,
    token_ids,
)

MAX_LABELS = 64


def _texts(schema: dict[str, Any]) -> None:
    """The JSON Schema of `input`: texts with something in them, one or a list of 1 to the
    server's `embed_max_inputs`."""
    text, listed = schema["oneOf"]
    text.update(TEXT)
    listed["items"]["oneOf"][0].update(TEXT)
    listed.update(minItems=1, **server_limit(maxItems="embed_max_inputs"))


class TextPair(RequestModel):
    """Two texts classified together, as a cross-encoder reads a query and a passage (the same
    keys as a line of pair classification data)."""

    text: str = Field(json_schema_extra=TEXT)
    text_pair: str = Field(json_schema_extra=TEXT)


ClassificationInput = Annotated[
    Annotated[str, Tag(branch("text"))] | Annotated[TextPair, Tag(branch("object"))], Discriminator(text_or_object)
]
ClassificationInputs = Annotated[
    Annotated[str, Tag(branch("text"))] | Annotated[list[ClassificationInput], Tag(branch("list"))],
    Discriminator(text_or_list),
]


class ClassificationRequest(RequestModel):
    model: str = Field(min_length=1)
    input: ClassificationInputs = Field(
        description="Texts, or `{\"text\", \"text_pair\"}` pairs for a classifier fine-tuned on pairs.",
        json_schema_extra=_texts,
    )
    labels: list[str] | None = Field(
        default=None, description="Candidate labels for zero-shot classification with any model (distinct once "
                                  "trimmed).",
        json_schema_extra={"items": TEXT, "minItems": 2, "maxItems": MAX_LABELS, "uniqueItems": True},
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
