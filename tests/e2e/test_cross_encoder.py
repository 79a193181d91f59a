"""A cross-encoder from the server's own life cycle: MiniLM fine-tuned as a classifier on query /
passage pairs (`tests/data/relevance_train.jsonl`) serves rerank, score and pair classification,
and ranks the held-out pairs (other places, other phrasings) better than the embedding model
does. The figures printed here are the ones docs/guides/embeddings-and-classification.md quotes."""

from __future__ import annotations

import json
import math
import time
from collections import defaultdict
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from maas_sdk import MaaS
from reference_server.testing import ServerProcess
from tests.constants import API_KEY, EMBEDDER
from tests.helpers import cpu_seconds, seconds_until_idle, server_process

pytestmark = pytest.mark.slow

DATA = Path(__file__).resolve().parents[1] / "data"
# Six epochs of the default LoRA job (adapter and head on the base encoder): 72 steps, a couple
# of minutes on two cores.
HYPERPARAMETERS = {"n_epochs": 6}


def heldout_queries() -> dict[str, list[dict[str, Any]]]:
    """Held-out pairs grouped by query: each query has one relevant passage among four."""
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for line in (DATA / "relevance_heldout.jsonl").read_text().splitlines():
        row = json.loads(line)
        groups[row["text"]].append(row)
    return groups


def ranking_quality(client: MaaS, model: str) -> dict[str, float]:
    """MRR and nDCG@3 of `model`'s rerank over the held-out queries."""
    reciprocal, ndcg = [], []
    for query, rows in heldout_queries().items():
        ranked = client.rerank(query, [r["text_pair"] for r in rows], model=model).indices
        rank = next(k for k, i in enumerate(ranked) if rows[i]["label"] == "relevant") + 1
        reciprocal.append(1 / rank)
        ndcg.append(1 / math.log2(rank + 1) if rank <= 3 else 0.0)  # one relevant passage: the ideal DCG is 1
    return {"mrr": sum(reciprocal) / len(reciprocal), "ndcg@3": sum(ndcg) / len(ndcg)}


@pytest.fixture(scope="module")
def cross_encoder(client: MaaS) -> SimpleNamespace:
    train = client.files.upload(DATA / "relevance_train.jsonl")
    heldout = client.files.upload(DATA / "relevance_heldout.jsonl", purpose="evals")
    assert (train.format, train.lines) == ("classification", 192)
    started = time.monotonic()
    job = client.fine_tuning.jobs.create(model=EMBEDDER, training_file=train.id, suffix="reranker", seed=42,
                                         hyperparameters=HYPERPARAMETERS).wait(poll_interval=0.5, timeout=900)
    return SimpleNamespace(model=job.fine_tuned_model, job=job, heldout=heldout, seconds=time.monotonic() - started)


def test_the_cross_encoder_ranks_held_out_pairs_better_than_the_bi_encoder(
        client: MaaS, cross_encoder: SimpleNamespace) -> None:
    assert cross_encoder.job.status == "succeeded"
    served = client.models.retrieve(cross_encoder.model)
    assert (served.parent, served.task) == (EMBEDDER, "classify")
    bi = ranking_quality(client, EMBEDDER)
    cross = ranking_quality(client, cross_encoder.model)
    print(f"\ncross-encoder trained in {cross_encoder.seconds:.1f} s ({cross_encoder.job.trained_tokens} tokens); "
          f"held-out MRR {cross['mrr']:.3f} / nDCG@3 {cross['ndcg@3']:.3f}; "
          f"bi-encoder MRR {bi['mrr']:.3f} / nDCG@3 {bi['ndcg@3']:.3f}")
    assert cross["mrr"] >= bi["mrr"] + 0.05 and cross["ndcg@3"] >= bi["ndcg@3"] + 0.05
    assert cross["mrr"] >= 0.8


def test_the_cross_encoder_scores_rerank_and_classifies_pairs_alike(
        server: ServerProcess, client: MaaS, cross_encoder: SimpleNamespace) -> None:
    query, rows = next(iter(heldout_queries().items()))
    passages = [r["text_pair"] for r in rows]
    ranked = client.rerank(query, passages, model=cross_encoder.model)
    relevance = {r.index: r.relevance_score for r in ranked.results}
    assert all(0.0 <= score <= 1.0 for score in relevance.values())
    with httpx.Client(base_url=server.url, headers={"authorization": f"Bearer {API_KEY}"}, timeout=120) as http:
        scored = http.post("/score", json={"model": cross_encoder.model, "text_1": query, "text_2": passages})
        v2 = http.post("/v2/rerank", json={"model": cross_encoder.model, "query": query, "documents": passages})
    assert scored.status_code == 200 and v2.status_code == 200, scored.text + v2.text
    assert [d["score"] for d in scored.json()["data"]] == pytest.approx([relevance[i] for i in range(len(rows))],
                                                                        abs=1e-5)
    assert [r["index"] for r in v2.json()["results"]] == ranked.indices
    classified = client.classify([{"text": query, "text_pair": p} for p in passages], model=cross_encoder.model)
    assert [item.scores["relevant"] for item in classified.data] == pytest.approx(
        [relevance[i] for i in range(len(rows))], abs=1e-5), "rerank's score is the classifier's probability"
    evaluation = client.evaluate(model=cross_encoder.model, file=cross_encoder.heldout.id)
    assert evaluation.num_examples == 128 and evaluation.metrics["accuracy"] >= 0.75


def test_an_abandoned_cross_encoder_rerank_stops(server: ServerProcess, cross_encoder: SimpleNamespace) -> None:
    process = server_process(server)
    seconds_until_idle(process, within=60)
    passage = "The museum on Elm Street opens at nine and a ticket costs twelve euros. " * 12
    body = {"model": cross_encoder.model, "query": "When does the museum open?",
            "documents": [f"{i} {passage}" for i in range(1000)]}  # a minute of work or more
    before = cpu_seconds(process)
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(server.url + "/rerank", json=body, headers={"authorization": f"Bearer {API_KEY}"},
                   timeout=httpx.Timeout(30, read=2.0))
    assert cpu_seconds(process) - before > 0.2, "the request did real work before the client left"
    idle = seconds_until_idle(process, within=30)
    assert idle < 15  # the batch in progress finishes; the machine may be shared
    assert "POST /rerank 499" in (server.log_path.read_text() if server.log_path else "")
