"""Relevance of texts to a query: rerank as Jina and Cohere shape it, and score as vLLM does.

- `POST /v1/rerank` (also `/rerank`): Jina's and Cohere's v1 request (`documents` as strings or
  `{"text": ...}` objects, `top_n`, `return_documents`), answered with `results` sorted by
  `relevance_score`, most relevant first, plus `id`, `model`, `usage` and Cohere's `meta`.
- `POST /v2/rerank`: what Cohere's `ClientV2.rerank` sends; the same answer, without documents
  unless asked for.
- `POST /score` (also `/v1/score`): vLLM's `text_1` (one text or many) against `text_2`, one score
  per pair in `data`.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar

from pydantic import Discriminator, Field, Tag

from maas_sdk.protocol.common import (
    TEXT,
    RequestModel,
    ResponseModel,
    Usage,
    branch,
    omitted_if_none,
    server_limit,
    text_or_object,
    texts,
)


class RerankDocument(RequestModel):
    """A document given as an object, as Jina and Cohere accept it (`{"text": ...}`)."""

    text: str = Field(json_schema_extra=TEXT)


DocumentInput = Annotated[
    Annotated[str, Tag(branch("text"))] | Annotated[RerankDocument, Tag(branch("object"))],
    Discriminator(text_or_object),
]


def _documents(schema: dict[str, Any]) -> None:
    """The JSON Schema of `documents`: texts with something in them, 1 to the server's
    `rerank_max_documents` of them."""
    schema["items"]["oneOf"][0].update(TEXT)
    schema.update(minItems=1, **server_limit(maxItems="rerank_max_documents"))


class RerankRequest(RequestModel):
    """The body of `POST /v1/rerank`: Jina's and Cohere's v1 fields."""

    RETURN_DOCUMENTS_DEFAULT: ClassVar[bool] = True

    model: str = Field(min_length=1)
    query: str = Field(json_schema_extra=TEXT)
    documents: list[DocumentInput] = Field(json_schema_extra=_documents)
    top_n: int | None = Field(default=None, ge=0, description="How many results to return; 0 or none: all.")
    return_documents: bool | None = Field(default=None, description="Include each document's text in its "
                                          "result (default: true here, false on /v2/rerank).")
    max_tokens_per_doc: int | None = Field(default=None, ge=1, description="Cut longer documents to this "
                                           "many tokens (they are always cut to fit the model).")

    @property
    def texts(self) -> list[str]:
        return [d if isinstance(d, str) else d.text for d in self.documents]

    @property
    def wants_documents(self) -> bool:
        return self.RETURN_DOCUMENTS_DEFAULT if self.return_documents is None else self.return_documents


class CohereRerankRequest(RerankRequest):
    """The body of `POST /v2/rerank`, as Cohere's v2 client sends it (`priority` is accepted and
    ignored: requests run in arrival order)."""

    RETURN_DOCUMENTS_DEFAULT: ClassVar[bool] = False
    IGNORED = ("priority",)

    priority: int | None = Field(default=None, description="Accepted and ignored.")


class RerankResultDocument(ResponseModel):
    text: str


class RerankResult(ResponseModel):
    index: int
    relevance_score: float
    document: RerankResultDocument | None = omitted_if_none()


class RerankUsage(ResponseModel):
    prompt_tokens: int = 0
    total_tokens: int = 0


class ApiVersion(ResponseModel):
    version: str


class BilledUnits(ResponseModel):
    search_units: int = 1


class RerankMeta(ResponseModel):
    """Cohere's `meta`: the API version the answer follows and what it bills (one search)."""

    api_version: ApiVersion
    billed_units: BilledUnits = Field(default_factory=BilledUnits)


class Reranking(ResponseModel):
    """The answer of every rerank route: `results` most relevant first (`index` is the document's
    position in the request); `.indices` lists those positions in ranked order."""

    id: str
    model: str
    results: list[RerankResult]
    usage: RerankUsage | None = None
    meta: RerankMeta | None = None

    @property
    def indices(self) -> list[int]:
        return [result.index for result in self.results]


class ScoreRequest(RequestModel):
    """The body of vLLM's `POST /score`: one `text_1` against every `text_2`, or pairwise."""

    model: str = Field(min_length=1)
    text_1: str | list[str] = Field(json_schema_extra=texts("rerank_max_documents"),
                                    description="One text, or as many as text_2.")
    text_2: str | list[str] = Field(json_schema_extra=texts("rerank_max_documents"))


class ScoreData(ResponseModel):
    index: int
    object: str = "score"
    score: float


class Scores(ResponseModel):
    id: str
    object: str = "list"
    created: int = 0
    model: str
    data: list[ScoreData]
    usage: Usage | None = None
