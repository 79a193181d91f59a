"""Rerank and score on the session's server with its embedding model: the Jina / Cohere v1 shape
at `/v1/rerank` and `/rerank`, Cohere's v2 at `/v2/rerank`, vLLM's `/score` and `/v1/score`,
the SDK's `rerank()`, and the clients people point at a rerank service: cohere's `ClientV2` and
langchain-cohere's `CohereRerank`, configured with the server's address as their users do."""

from __future__ import annotations

import math
import time
from typing import Any

import httpx
import pytest

from maas_sdk import AsyncMaaS, BadRequestError, MaaS, NotFoundError, Reranking
from reference_server.testing import ServerProcess
from tests.constants import API_KEY, EMBEDDER, GENERATOR, USAGE_KEY

AUTH = {"authorization": f"Bearer {API_KEY}"}
QUERY = "When does the train to the airport leave?"
DOCUMENTS = [
    "Bake the bread for forty minutes at two hundred degrees.",
    "The airport train departs every half hour from platform two.",
    "The match ended in a draw after extra time.",
    "Trains to the airport leave at ten past and twenty to each hour.",
]


@pytest.fixture(scope="module")
def http(server: ServerProcess) -> Any:
    with httpx.Client(base_url=server.url, headers=AUTH, timeout=60) as client:
        yield client


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b)) / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))


def test_rerank_sorts_by_the_cosine_similarity_of_the_embeddings(http: httpx.Client, client: MaaS) -> None:
    vectors = client.embed([QUERY, *DOCUMENTS], model=EMBEDDER).vectors
    expected = [cosine(vectors[0], v) for v in vectors[1:]]
    for path in ("/v1/rerank", "/rerank"):
        reply = http.post(path, json={"model": EMBEDDER, "query": QUERY, "documents": DOCUMENTS})
        assert reply.status_code == 200, reply.text
        body = reply.json()
        assert body["id"].startswith("rerank-") and body["model"] == EMBEDDER
        assert body["meta"] == {"api_version": {"version": "1"}, "billed_units": {"search_units": 1}}
        assert body["usage"]["prompt_tokens"] == body["usage"]["total_tokens"] > 5 * len(DOCUMENTS)
        results = body["results"]
        assert sorted(r["index"] for r in results) == list(range(len(DOCUMENTS)))
        scores = [r["relevance_score"] for r in results]
        assert scores == sorted(scores, reverse=True)
        assert {r["index"] for r in results[:2]} == {1, 3}, "both train passages first"
        for r in results:
            assert r["relevance_score"] == pytest.approx(expected[r["index"]], abs=1e-4)
            assert r["document"] == {"text": DOCUMENTS[r["index"]]}, "Jina returns documents unless told not to"


def test_rerank_options_top_n_return_documents_and_document_objects(http: httpx.Client) -> None:
    full = http.post("/v1/rerank", json={"model": EMBEDDER, "query": QUERY, "documents": DOCUMENTS}).json()
    top = http.post("/v1/rerank", json={"model": EMBEDDER, "query": QUERY, "top_n": 2, "return_documents": False,
                                        "documents": [{"text": d} for d in DOCUMENTS]}).json()
    assert [r["index"] for r in top["results"]] == [r["index"] for r in full["results"][:2]]
    assert all(set(r) == {"index", "relevance_score"} for r in top["results"])
    everything = http.post("/v1/rerank", json={"model": EMBEDDER, "query": QUERY, "documents": DOCUMENTS,
                                               "top_n": 0}).json()
    assert len(everything["results"]) == len(DOCUMENTS), "top_n 0 (vLLM's default) means all"
    more = http.post("/v1/rerank", json={"model": EMBEDDER, "query": QUERY, "documents": DOCUMENTS, "top_n": 50})
    assert len(more.json()["results"]) == len(DOCUMENTS)
    v2 = http.post("/v2/rerank", json={"model": EMBEDDER, "query": QUERY, "documents": DOCUMENTS, "top_n": 3,
                                       "max_tokens_per_doc": 4, "priority": 0})
    assert v2.status_code == 200, v2.text
    assert v2.json()["meta"]["api_version"] == {"version": "2"}
    assert all("document" not in r for r in v2.json()["results"]), "Cohere v2 sends no documents by default"
    assert v2.headers["x-maas-ignored-params"] == "priority"


def test_max_tokens_per_doc_cuts_documents_and_long_ones_fit_the_model(http: httpx.Client, client: MaaS) -> None:
    cut = http.post("/v2/rerank", json={"model": EMBEDDER, "query": QUERY, "documents": DOCUMENTS,
                                        "max_tokens_per_doc": 3}).json()
    heads = [client.detokenize(client.tokenize(d, model=EMBEDDER, add_special_tokens=False).tokens[:3],
                               model=EMBEDDER).text for d in DOCUMENTS]
    assert heads[0] == "bake the"  # "bake" is two tokens
    vectors = client.embed([QUERY, *heads], model=EMBEDDER).vectors
    for r in cut["results"]:
        assert r["relevance_score"] == pytest.approx(cosine(vectors[0], vectors[1 + r["index"]]), abs=1e-4)
    long_document = "The airport train is punctual. " * 400  # far beyond the model's 512 tokens
    reply = http.post("/rerank", json={"model": EMBEDDER, "query": QUERY, "documents": [long_document, DOCUMENTS[0]]})
    assert reply.status_code == 200, reply.text
    assert reply.json()["results"][0]["index"] == 0


def test_score_in_vllm_shape_one_to_many_and_pairwise(http: httpx.Client) -> None:
    ranked = http.post("/v1/rerank", json={"model": EMBEDDER, "query": QUERY, "documents": DOCUMENTS}).json()
    by_index = {r["index"]: r["relevance_score"] for r in ranked["results"]}
    for path in ("/score", "/v1/score"):
        reply = http.post(path, json={"model": EMBEDDER, "text_1": QUERY, "text_2": DOCUMENTS})
        assert reply.status_code == 200, reply.text
        body = reply.json()
        assert body["object"] == "list" and body["id"].startswith("score-") and body["created"] > 0
        assert body["model"] == EMBEDDER and body["usage"]["completion_tokens"] == 0
        assert [d["index"] for d in body["data"]] == list(range(len(DOCUMENTS)))
        assert all(d["object"] == "score" for d in body["data"])
        assert [d["score"] for d in body["data"]] == pytest.approx([by_index[i] for i in range(len(DOCUMENTS))],
                                                                   abs=1e-5)
    pairs = http.post("/score", json={"model": EMBEDDER, "text_1": [QUERY, DOCUMENTS[0]],
                                      "text_2": [DOCUMENTS[1], DOCUMENTS[0]]}).json()
    assert pairs["data"][0]["score"] == pytest.approx(by_index[1], abs=1e-5)
    assert pairs["data"][1]["score"] == pytest.approx(1.0, abs=1e-4), "a text is most similar to itself"


@pytest.mark.parametrize(("path", "body", "param"), [
    ("/v1/rerank", {"model": EMBEDDER, "query": QUERY, "documents": ["x"] * 1001}, "documents"),
    ("/rerank", {"model": EMBEDDER, "query": QUERY, "documents": []}, "documents"),
    ("/rerank", {"model": EMBEDDER, "query": " ", "documents": DOCUMENTS}, "query"),
    ("/v2/rerank", {"model": EMBEDDER, "query": QUERY, "documents": ["fine", ""]}, "documents[1]"),
    ("/v2/rerank", {"model": EMBEDDER, "query": QUERY, "documents": [{"text": "a", "title": "b"}]},
     "documents[0].title"),
    ("/v1/rerank", {"model": EMBEDDER, "query": QUERY, "documents": DOCUMENTS, "top_n": -1}, "top_n"),
    ("/v1/rerank", {"model": GENERATOR, "query": QUERY, "documents": DOCUMENTS}, "model"),
    ("/score", {"model": EMBEDDER, "text_1": ["a", "b"], "text_2": ["a", "b", "c"]}, "text_1"),
    ("/v1/score", {"model": EMBEDDER, "text_1": "a", "text_2": ["b"] * 1001}, "text_2"),
], ids=["too-many-documents", "no-documents", "blank-query", "empty-document", "unknown-document-field",
        "negative-top-n", "a-generator", "mismatched-pairs", "too-many-texts"])
def test_bad_requests_are_400s_naming_the_parameter(http: httpx.Client, path: str, body: dict, param: str) -> None:
    reply = http.post(path, json=body)
    assert reply.status_code == 400, reply.text
    error = reply.json()["error"]
    assert error["param"] == param and error["type"] == "invalid_request_error"
    if param in ("documents", "text_2") and len(body.get("documents", body.get("text_2", []))) > 1000:
        assert "MAAS_RERANK_MAX_DOCUMENTS" in error["message"] and "1000" in error["message"]


def test_every_route_needs_the_key_and_an_existing_model(server: ServerProcess, http: httpx.Client) -> None:
    for path in ("/v1/rerank", "/rerank", "/v2/rerank", "/score", "/v1/score"):
        assert httpx.post(server.url + path, json={}).status_code == 401, path
    missing = http.post("/rerank", json={"model": "no-such-model", "query": QUERY, "documents": DOCUMENTS})
    assert missing.status_code == 404 and missing.json()["error"]["param"] == "model"


def test_the_sdk_reranks_sync_and_async(client: MaaS) -> None:
    ranked = client.rerank(QUERY, DOCUMENTS, model=EMBEDDER, top_n=2)
    assert isinstance(ranked, Reranking) and ranked.request_id
    assert set(ranked.indices) == {1, 3}
    assert ranked.results[0].document is not None and ranked.results[0].document.text == DOCUMENTS[ranked.indices[0]]
    bare = client.rerank(QUERY, DOCUMENTS, model=EMBEDDER, return_documents=False)
    assert bare.indices[:2] == ranked.indices and all(r.document is None for r in bare.results)
    with pytest.raises(BadRequestError) as refused:
        client.rerank(QUERY, DOCUMENTS, model=GENERATOR)
    assert refused.value.param == "model"
    with pytest.raises(NotFoundError):
        client.rerank(QUERY, DOCUMENTS, model="no-such-model")


async def test_the_async_sdk_reranks_alike(async_client: AsyncMaaS, client: MaaS) -> None:
    ranked = await async_client.rerank(QUERY, DOCUMENTS, model=EMBEDDER)
    assert ranked.indices == client.rerank(QUERY, DOCUMENTS, model=EMBEDDER).indices


def test_rerank_and_score_are_counted_in_the_keys_usage(server: ServerProcess) -> None:
    since = int(time.time()) - 3600

    def used(client: MaaS) -> tuple[int, int, int]:
        page = client.usage(start_time=since, bucket_width="1h", group_by=["kind"], kinds=["rerank"])
        results = [r for bucket in page.data for r in bucket.results]
        return (sum(r.requests for r in results), sum(r.prompt_tokens for r in results),
                sum(r.inputs for r in results))

    with MaaS(api_key=USAGE_KEY, base_url=server.base_url, timeout=60) as client:
        before = used(client)
        ranked = client.rerank(QUERY, DOCUMENTS, model=EMBEDDER)
        scored = httpx.post(f"{server.url}/score", headers={"authorization": f"Bearer {USAGE_KEY}"}, timeout=60,
                            json={"model": EMBEDDER, "text_1": QUERY, "text_2": DOCUMENTS[:2]}).json()
        after = used(client)
    assert ranked.usage is not None
    tokens = ranked.usage.prompt_tokens + scored["usage"]["prompt_tokens"]
    assert tuple(a - b for a, b in zip(after, before)) == (2, tokens, len(DOCUMENTS) + 2)


def test_pairs_need_a_pair_classifier(client: MaaS) -> None:
    with pytest.raises(BadRequestError) as refused:
        client.classify([{"text": QUERY, "text_pair": DOCUMENTS[1]}], model=EMBEDDER, labels=["yes", "no"])
    assert refused.value.param == "input"


@pytest.mark.slow  # importing the cohere client takes seconds
def test_cohere_clients_rerank_against_the_server(server: ServerProcess, http: httpx.Client) -> None:
    import cohere

    co = cohere.ClientV2(api_key=API_KEY, base_url=server.url)
    answer = co.rerank(model=EMBEDDER, query=QUERY, documents=DOCUMENTS, top_n=3)
    ours = http.post("/v1/rerank", json={"model": EMBEDDER, "query": QUERY, "documents": DOCUMENTS}).json()
    assert [r.index for r in answer.results] == [r["index"] for r in ours["results"][:3]]
    assert [r.relevance_score for r in answer.results] == pytest.approx(
        [r["relevance_score"] for r in ours["results"][:3]], abs=1e-6)
    assert answer.id and answer.meta is not None and answer.meta.api_version is not None
    assert answer.meta.api_version.version == "2"
    with pytest.raises(cohere.errors.BadRequestError) as refused:
        co.rerank(model=EMBEDDER, query=QUERY, documents=["x"] * 1001)
    assert refused.value.body["error"]["param"] == "documents"
    with pytest.raises(cohere.errors.NotFoundError):
        co.rerank(model="no-such-model", query=QUERY, documents=DOCUMENTS)
    v1 = cohere.Client(api_key=API_KEY, base_url=server.url).rerank(  # the v1 client: POST /v1/rerank
        model=EMBEDDER, query=QUERY, documents=DOCUMENTS, top_n=2, return_documents=True)
    assert [(r.index, r.document.text if r.document else None) for r in v1.results] == [
        (r["index"], r["document"]["text"]) for r in ours["results"][:2]]


@pytest.mark.slow  # importing langchain takes seconds
def test_langchain_cohere_rerank_compresses_documents_through_the_server(server: ServerProcess,
                                                                         http: httpx.Client) -> None:
    from langchain_cohere import CohereRerank
    from langchain_core.documents import Document

    reranker = CohereRerank(model=EMBEDDER, base_url=server.url, cohere_api_key=API_KEY, top_n=2)  # type: ignore[arg-type]
    kept = reranker.compress_documents([Document(page_content=d, metadata={"n": i}) for i, d in enumerate(DOCUMENTS)],
                                       QUERY)
    ours = http.post("/v1/rerank", json={"model": EMBEDDER, "query": QUERY, "documents": DOCUMENTS}).json()
    assert [d.metadata["n"] for d in kept] == [r["index"] for r in ours["results"][:2]]
    assert [d.metadata["relevance_score"] for d in kept] == pytest.approx(
        [r["relevance_score"] for r in ours["results"][:2]], abs=1e-6)
    log = server.log_path.read_text() if server.log_path else ""
    assert "POST /v2/rerank 200" in log, "the reranker called this server"
