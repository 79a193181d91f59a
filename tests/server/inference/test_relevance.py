"""Relevance by a pair classifier, on MiniLM with real heads: which output is read (a one-logit
head through its sigmoid, else the `relevant` label's probability), refusing a classifier with
neither, and cutting texts at whole tokens."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from transformers import AutoModelForSequenceClassification

from reference_server.inference.loading import LoadedModel
from reference_server.inference.tasks.errors import NLUError
from reference_server.inference.tasks.relevance import cross_encoder_scores, cut

QUERY = "When does the museum open?"
PASSAGES = ["Doors open at nine every morning.", "The museum is on Elm Street.", "Tickets cost twelve euros."]


def pair_classifier(embedder: LoadedModel, labels: list[str]) -> LoadedModel:
    """MiniLM with a freshly initialised classification head of `labels` (one output if one label)."""
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(
        embedder.model.name_or_path, num_labels=len(labels),
        id2label=dict(enumerate(labels)), label2id={label: i for i, label in enumerate(labels)},
    ).eval()
    return dataclasses.replace(embedder, model=model, spec=embedder.spec.model_copy(update={"task": "classify"}))


def logits(loaded: LoadedModel, documents: list[str]) -> torch.Tensor:
    enc = loaded.tokenizer([QUERY] * len(documents), documents, padding=True, return_tensors="pt")
    with torch.no_grad():
        return loaded.model(**enc).logits.float()


def test_a_one_logit_head_is_read_through_its_sigmoid(embedder: LoadedModel) -> None:
    loaded = pair_classifier(embedder, ["score"])
    scores, tokens = cross_encoder_scores(loaded, "m", [QUERY], PASSAGES, None)
    expected = torch.sigmoid(logits(loaded, PASSAGES)[:, 0])
    torch.testing.assert_close(torch.tensor(scores), expected, atol=1e-5, rtol=0)
    assert tokens == sum(len(loaded.tokenizer(QUERY, p)["input_ids"]) for p in PASSAGES)


def test_the_relevant_label_is_read_and_a_classifier_without_one_refused(embedder: LoadedModel) -> None:
    loaded = pair_classifier(embedder, ["irrelevant", "relevant"])
    scores, _ = cross_encoder_scores(loaded, "m", [QUERY] * 3, PASSAGES, None)
    expected = torch.softmax(logits(loaded, PASSAGES), dim=-1)[:, 1]
    torch.testing.assert_close(torch.tensor(scores), expected, atol=1e-5, rtol=0)
    with pytest.raises(NLUError) as refused:
        cross_encoder_scores(pair_classifier(embedder, ["negative", "positive"]), "ft:sentiment", [QUERY], PASSAGES,
                             None)
    assert refused.value.param == "model" and "'relevant'" in str(refused.value)


def test_max_tokens_per_doc_scores_the_cut_documents(embedder: LoadedModel) -> None:
    loaded = pair_classifier(embedder, ["0", "1"])
    cut_scores, _ = cross_encoder_scores(loaded, "m", [QUERY], PASSAGES, 2)
    heads = [cut(loaded.tokenizer, p, 2) for p in PASSAGES]
    assert heads == ["Doors open", "The museum", "Tickets cost"]
    expected = torch.softmax(logits(loaded, heads), dim=-1)[:, 1]
    torch.testing.assert_close(torch.tensor(cut_scores), expected, atol=1e-5, rtol=0)


def test_cut_keeps_whole_tokens_of_the_original_text(embedder: LoadedModel) -> None:
    tokenizer = embedder.tokenizer
    assert cut(tokenizer, "Bake the bread for forty minutes.", 2) == "Bake"  # "bake" is two tokens: ba ##ke
    text = "Crème brûlée, naïvely made."
    head = cut(tokenizer, text, 3)
    assert text.startswith(head) and head.startswith("Crème "), "the original characters, not a decoding"
    assert len(tokenizer(head, add_special_tokens=False)["input_ids"]) == 3
    assert cut(tokenizer, "Short.", 10) == "Short."
