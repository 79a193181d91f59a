"""`POST /v1/embeddings`: sentence vectors."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from maas_sdk.protocol.common import RequestModel, ResponseModel, server_limit, token_ids


class EmbeddingRequest(RequestModel):
    IGNORED = ("user",)

    model: str = Field(min_length=1)
    input: str | list[str] | list[int] | list[list[int]] = Field(json_schema_extra={"anyOf": [
        {"type": "string", "minLength": 1},
        {"type": "array", "items": {"type": "string", "minLength": 1}, "minItems": 1,
         **server_limit(maxItems="embed_max_inputs")},
        token_ids(min_items=1),
        {"type": "array", "items": token_ids(min_items=1), "minItems": 1, **server_limit(maxItems="embed_max_inputs")},
    ]})
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(default=None, ge=1)
    user: str | None = Field(default=None, description="Accepted and ignored.")


class Embedding(ResponseModel):
    object: str = "embedding"
    index: int
    embedding: list[float] | str


class EmbeddingUsage(ResponseModel):
    prompt_tokens: int = 0
    total_tokens: int = 0


class Embeddings(ResponseModel):
    """The response of `/v1/embeddings`. `.vectors` lists the vectors in input order."""

    object: str = "list"
    data: list[Embedding]
    model: str
    usage: EmbeddingUsage | None = None

    @property
    def vectors(self) -> list[list[float]]:
        ordered = sorted(self.data, key=lambda item: item.index)
        out: list[list[float]] = []
        for item in ordered:
            if isinstance(item.embedding, str):
                # A ValueError, not a TypeError: the data is well typed, it was asked for in another encoding.
                raise ValueError(  # noqa: TRY004
                    "embeddings were requested as base64; decode `data[i].embedding` instead"
                )
            out.append(item.embedding)
        return out
