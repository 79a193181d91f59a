"""`POST /v1/embeddings`: sentence vectors."""

from __future__ import annotations

from typing import List, Literal, Optional, Union

from pydantic import Field

from maas_sdk.protocol.common import RequestModel, ResponseModel


class EmbeddingRequest(RequestModel):
    model: str = Field(min_length=1)
    input: Union[str, List[str], List[int], List[List[int]]]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: Optional[int] = Field(default=None, ge=1)
    user: Optional[str] = None


class Embedding(ResponseModel):
    object: str = "embedding"
    index: int
    embedding: Union[List[float], str]


class EmbeddingUsage(ResponseModel):
    prompt_tokens: int = 0
    total_tokens: int = 0


class Embeddings(ResponseModel):
    """The response of `/v1/embeddings`. `.vectors` lists the vectors in input order."""

    object: str = "list"
    data: List[Embedding]
    model: str
    usage: Optional[EmbeddingUsage] = None

    @property
    def vectors(self) -> List[List[float]]:
        ordered = sorted(self.data, key=lambda item: item.index)
        out: List[List[float]] = []
        for item in ordered:
            if isinstance(item.embedding, str):
                raise ValueError("embeddings were requested as base64; decode `data[i].embedding` instead")
            out.append(item.embedding)
        return out
