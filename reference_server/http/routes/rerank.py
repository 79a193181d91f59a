"""Rerank and score: how relevant each of many texts is to a query.

`POST /v1/rerank` and `/rerank` take Jina's and Cohere's v1 body, `POST /v2/rerank` what
Cohere's v2 client sends; all three answer `results` sorted most relevant first. `POST /score`
and `/v1/score` take vLLM's (`text_1` against `text_2`) and answer one score per pair, in order.
An embedding model scores by cosine similarity, a classifier fine-tuned on text pairs by its
relevance probability (`reference_server.inference.tasks.relevance` says how); any other model
is a 400 naming `model`. Every route takes at most `MAAS_RERANK_MAX_DOCUMENTS` documents.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence

from starlette.requests import Request
from starlette.responses import Response

from maas_sdk import protocol as p
from maas_sdk.protocol import (
    CohereRerankRequest,
    Reranking,
    RerankRequest,
    RerankResult,
    ScoreData,
    ScoreRequest,
)
from maas_sdk.protocol.rerank import ApiVersion, RerankMeta, RerankResultDocument, RerankUsage, Scores
from maas_sdk.protocol.vocabulary import DEFAULT_EMBEDDER
from reference_server.http.errors import bad_request
from reference_server.http.ignored import mark_ignored
from reference_server.http.metrics import model_label
from reference_server.http.middleware.auth import caller_of
from reference_server.http.middleware.ratelimit import charge_input_tokens
from reference_server.http.parsing import json_response, parse_body, served_model
from reference_server.http.routing import BODY_ERRORS, RouteTable
from reference_server.inference.adapted import adapted, batched_classifier
from reference_server.inference.registry import ServedModel
from reference_server.inference.tasks import relevance
from reference_server.state import state_of

table = RouteTable("rerank")

_RERANK_EXAMPLE = {"model": DEFAULT_EMBEDDER, "query": "When does the train leave?",
                   "documents": ["The train departs at noon.", "Bread bakes in forty minutes."], "top_n": 1}
_SCORE_EXAMPLE = {"model": DEFAULT_EMBEDDER, "text_1": "When does the train leave?",
                  "text_2": ["The train departs at noon.", "Bread bakes in forty minutes."]}


def check_texts(texts: Sequence[str], limit: int, param: str) -> None:
    """At least one text, none empty, at most `limit` (`MAAS_RERANK_MAX_DOCUMENTS`); 400 otherwise."""
    if not texts:
        raise bad_request(f"{param} must not be empty.", param=param)
    if len(texts) > limit:
        raise bad_request(f"{param} has {len(texts)} texts; at most {limit} are allowed per call "
                          "(MAAS_RERANK_MAX_DOCUMENTS).", param=param, code="too_many_documents")
    for i, text in enumerate(texts):
        if not text.strip():
            raise bad_request(f"{param}[{i}] is empty.", param=f"{param}[{i}]")


async def relevance_scores(request: Request, served: ServedModel, queries: list[str], documents: list[str],
                           max_tokens_per_doc: int | None = None) -> tuple[list[float], int]:
    """The relevance of each document to its query (one query: to every document) by `served`,
    and the tokens read."""
    state = state_of(request)
    batcher = served.batcher if served.task == "embed" else None
    if batcher is None and served.task != "classify":
        raise bad_request(f"The model '{served.id}' is a {served.task} model; rerank and score need an embedding "
                          "model or a classifier fine-tuned on text pairs.", param="model",
                          code="model_task_mismatch")
    await charge_input_tokens(request, served.loaded.tokenizer, [*queries, *documents])
    on_batcher = batched_classifier(served)
    if batcher is not None:
        fitted = await state.thread_work.run(relevance.fit_for_embedding, served.loaded, queries, documents,
                                             max_tokens_per_doc)
        scores, tokens = await batcher.similarity(*fitted)
    elif on_batcher is not None:  # an adapter and head on the base encoder's batcher
        encoder, source = on_batcher
        head = relevance.relevance_head(list(source.labels), served.id)
        pairs = await state.thread_work.run(relevance.query_document_pairs, served.loaded.tokenizer, queries,
                                            documents, max_tokens_per_doc)
        logits, tokens = await encoder.classify(pairs, source)
        scores = relevance.relevance_from_logits(logits, head)
    else:
        scores, tokens = await state.thread_work.run(adapted(served, relevance.cross_encoder_scores), served.loaded,
                                                     served.id, queries, documents, max_tokens_per_doc)
    state.metrics.prompt_tokens.labels(model_label(served)).inc(tokens)
    state.usage.record(caller_of(request).principal, served.id, "rerank", prompt_tokens=tokens, inputs=len(documents))
    return scores, tokens


async def _rerank(request: Request, body: RerankRequest, version: str) -> Response:
    documents = body.texts
    check_texts(documents, state_of(request).settings.rerank_max_documents, "documents")
    if not body.query.strip():
        raise bad_request("query must not be empty.", param="query")
    served = served_model(request, body.model)
    scores, tokens = await relevance_scores(request, served, [body.query], documents, body.max_tokens_per_doc)
    ranked = sorted(range(len(documents)), key=lambda i: -scores[i])  # stable: ties keep the request's order
    results = [RerankResult(index=i, relevance_score=scores[i],
                            document=RerankResultDocument(text=documents[i]) if body.wants_documents else None)
               for i in ranked[:body.top_n or None]]
    answer = Reranking(id=f"rerank-{uuid.uuid4().hex}", model=body.model, results=results,
                       usage=RerankUsage(prompt_tokens=tokens, total_tokens=tokens),
                       meta=RerankMeta(api_version=ApiVersion(version=version)))
    return mark_ignored(json_response(answer), body)


_RERANK_SUMMARY = ("Rank documents by relevance to a query (Jina and Cohere v1 shape); `return_documents` "
                   "defaults to true.")


@table.route("POST", "/v1/rerank", _RERANK_SUMMARY, request=p.RerankRequest, response=p.Reranking,
             errors=BODY_ERRORS, example=_RERANK_EXAMPLE)
async def create_rerank(request: Request) -> Response:
    return await _rerank(request, await parse_body(request, RerankRequest), "1")


@table.route("POST", "/rerank", _RERANK_SUMMARY, request=p.RerankRequest, response=p.Reranking,
             errors=BODY_ERRORS, example=_RERANK_EXAMPLE)
async def create_rerank_at_root(request: Request) -> Response:
    return await _rerank(request, await parse_body(request, RerankRequest), "1")


@table.route("POST", "/v2/rerank", "Rank documents by relevance to a query, as Cohere's v2 client asks; "
             "`return_documents` defaults to false.", request=p.CohereRerankRequest, response=p.Reranking,
             errors=BODY_ERRORS, example=_RERANK_EXAMPLE)
async def create_rerank_v2(request: Request) -> Response:
    return await _rerank(request, await parse_body(request, CohereRerankRequest), "2")


async def _score(request: Request) -> Response:
    body = await parse_body(request, ScoreRequest)
    firsts = [body.text_1] if isinstance(body.text_1, str) else body.text_1
    seconds = [body.text_2] if isinstance(body.text_2, str) else body.text_2
    limit = state_of(request).settings.rerank_max_documents
    check_texts(firsts, limit, "text_1")
    check_texts(seconds, limit, "text_2")
    if len(firsts) not in (1, len(seconds)):
        raise bad_request(f"text_1 has {len(firsts)} texts and text_2 has {len(seconds)}: send one text_1 to "
                          "score against every text_2, or as many as text_2 to score in pairs.", param="text_1")
    served = served_model(request, body.model)
    scores, tokens = await relevance_scores(request, served, firsts, seconds)
    answer = Scores(id=f"score-{uuid.uuid4().hex}", created=int(time.time()), model=body.model,
                    data=[ScoreData(index=i, score=s) for i, s in enumerate(scores)],
                    usage=p.Usage(prompt_tokens=tokens, total_tokens=tokens))
    return json_response(answer)


_SCORE_SUMMARY = "Score text pairs (vLLM shape): one `text_1` against each `text_2`, or in pairs."


@table.route("POST", "/score", _SCORE_SUMMARY, request=p.ScoreRequest, response=p.Scores, errors=BODY_ERRORS,
             example=_SCORE_EXAMPLE)
async def create_score_at_root(request: Request) -> Response:
    return await _score(request)


@table.route("POST", "/v1/score", _SCORE_SUMMARY, request=p.ScoreRequest, response=p.Scores, errors=BODY_ERRORS,
             example=_SCORE_EXAMPLE)
async def create_score(request: Request) -> Response:
    return await _score(request)
