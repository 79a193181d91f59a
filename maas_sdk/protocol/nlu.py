"""Our extensions: classification, tokenization and evaluation."""

from __future__ import annotations

from typing import Dict, List, Optional, Union

from pydantic import Field

from maas_sdk.protocol.common import RequestModel, ResponseModel, Usage


class ClassificationRequest(RequestModel):
    model: str = Field(min_length=1)
    input: Union[str, List[str]]
    labels: Optional[List[str]] = Field(
        default=None, description="Candidate labels for zero-shot classification with any model."
    )


class Classification(ResponseModel):
    index: int
    label: str
    score: float
    scores: Dict[str, float]


class Classifications(ResponseModel):
    """`.data[i]` is the result for input i; `.labels` the top label per input."""

    object: str = "list"
    model: str
    data: List[Classification]
    usage: Optional[Usage] = None

    @property
    def labels(self) -> List[str]:
        return [item.label for item in sorted(self.data, key=lambda c: c.index)]


class TokenizeRequest(RequestModel):
    model: str = Field(min_length=1)
    text: str
    add_special_tokens: bool = True


class Tokenized(ResponseModel):
    model: str
    tokens: List[int]
    token_strings: List[str] = Field(default_factory=list)
    count: int
    max_model_len: Optional[int] = None


class DetokenizeRequest(RequestModel):
    model: str = Field(min_length=1)
    tokens: List[int]


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
    metrics: Dict[str, float]
    num_examples: int
