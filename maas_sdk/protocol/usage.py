"""What an API key used, in pages of time buckets: `GET /v1/usage` (every kind of use) and OpenAI's
Usage API, `GET /v1/organization/usage/completions` and `.../embeddings`, in OpenAI's shape.

A page holds consecutive buckets (`bucket_width` long: a minute, an hour or a day, starting at
multiples of it in UTC), each with its results: one for the whole bucket, or one per model
(and kind, or API key) when grouped so. `next_page` is the `page` parameter of the next page.
"""

from __future__ import annotations

from typing import Generic, Literal, TypeVar

from maas_sdk.protocol.common import ResponseModel


class UsageResult(ResponseModel):
    """Use by the calling key in one bucket, of one model and kind when grouped by them (else None)."""

    object: Literal["usage.result"] = "usage.result"
    model: str | None = None
    kind: str | None = None
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    inputs: int = 0
    trained_tokens: int = 0
    total_tokens: int = 0


class CompletionsUsageResult(ResponseModel):
    """OpenAI's `organization.usage.completions.result`: generation by the calling key."""

    object: Literal["organization.usage.completions.result"] = "organization.usage.completions.result"
    input_tokens: int = 0
    output_tokens: int = 0
    input_cached_tokens: int = 0
    input_audio_tokens: int = 0
    output_audio_tokens: int = 0
    num_model_requests: int = 0
    project_id: str | None = None
    user_id: str | None = None
    api_key_id: str | None = None
    model: str | None = None
    batch: bool | None = None


class EmbeddingsUsageResult(ResponseModel):
    """OpenAI's `organization.usage.embeddings.result`: embeddings by the calling key."""

    object: Literal["organization.usage.embeddings.result"] = "organization.usage.embeddings.result"
    input_tokens: int = 0
    num_model_requests: int = 0
    project_id: str | None = None
    user_id: str | None = None
    api_key_id: str | None = None
    model: str | None = None


ResultT = TypeVar("ResultT", UsageResult, CompletionsUsageResult, EmbeddingsUsageResult)


class UsageBucket(ResponseModel, Generic[ResultT]):
    """One time bucket, `[start_time, end_time)` in Unix seconds, and its results (none if nothing was used)."""

    object: Literal["bucket"] = "bucket"
    start_time: int
    end_time: int
    results: list[ResultT]


class UsagePage(ResponseModel, Generic[ResultT]):
    """Consecutive buckets; `next_page` is the `page` of the next ones when `has_more`."""

    object: Literal["page"] = "page"
    data: list[UsageBucket[ResultT]]
    has_more: bool = False
    next_page: str | None = None
