"""`POST /v1/classifications`: the top label and every label's score for each input.

An input is a text, or a `{"text", "text_pair"}` pair for a classifier fine-tuned on pairs.

A classifier model scores its trained labels (or the subset named in `labels`); an embedder or
a generator classifies zero-shot among the given `labels` (see `reference_server.inference.tasks.classify` for how).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from maas_sdk import protocol as p
from maas_sdk.protocol import Classification, ClassificationRequest, Classifications, TextPair, Usage
from maas_sdk.protocol.vocabulary import DEFAULT_EMBEDDER
from reference_server.http.errors import bad_request
from reference_server.http.middleware.auth import caller_of
from reference_server.http.middleware.ratelimit import charge_input_tokens
from reference_server.http.parsing import json_response, parse_body, served_model
from reference_server.http.routing import BODY_ERRORS, RouteTable
from reference_server.inference.adapted import adapted, batched_classifier
from reference_server.inference.offload import ThreadWork
from reference_server.inference.registry import ServedModel
from reference_server.inference.tasks import classify
from reference_server.state import state_of

table = RouteTable("nlu")



def _inputs(raw: str | list[str | TextPair], max_inputs: int) -> list[classify.ClassifierInput]:
    items = [raw] if isinstance(raw, str) else list(raw)
    if not items:
        raise bad_request("input must not be empty.", param="input")
    if len(items) > max_inputs:
        raise bad_request(f"input has {len(items)} items; at most {max_inputs} are allowed per call.",
                          param="input")
    for i, item in enumerate(items):
        texts = [item] if isinstance(item, str) else [item.text, item.text_pair]
        if not all(text.strip() for text in texts):
            raise bad_request(f"input[{i}] is empty.", param=f"input[{i}]")
    return [item if isinstance(item, str) else (item.text, item.text_pair) for item in items]


async def _score(served: ServedModel, inputs: list[classify.ClassifierInput], labels: list[str] | None,
                 work: ThreadWork) -> tuple[list[classify.Scored], int]:
    on_batcher = batched_classifier(served)
    if on_batcher is not None:  # an adapter and head on the base encoder's batcher
        batcher, source = on_batcher
        classify.check_known(list(source.labels), labels)
        logits, tokens = await batcher.classify(inputs, source)
        return classify.scores_from_logits(list(source.labels), labels, logits), tokens
    if served.task == "classify":
        return await work.run(classify.classify_with_head, served.loaded, inputs, labels)
    texts = [item for item in inputs if isinstance(item, str)]
    if len(texts) < len(inputs):
        raise bad_request(f"The model '{served.id}' is not a classifier; only a classifier fine-tuned on text pairs "
                          "classifies them.", param="input")
    if labels is None:
        raise bad_request(f"The model '{served.id}' is not a trained classifier; pass `labels` to classify "
                          "zero-shot among them.", param="labels", code="labels_required")
    if served.task == "embed" and served.batcher is not None:
        vectors, tokens = await served.batcher.embed(texts + labels)
        return classify.zero_shot_by_similarity(vectors, len(texts), labels), tokens
    if served.task == "generate":
        return await work.run(adapted(served, classify.zero_shot_by_likelihood), served.loaded, texts, labels)
    raise bad_request(f"The model '{served.id}' cannot classify.", param="model")


@table.route("POST", "/v1/classifications", "Classify texts: a trained classifier's labels, or zero-shot "
             "among `labels` with any model.", request=p.ClassificationRequest, response=p.Classifications,
             errors=BODY_ERRORS,
             example={"model": DEFAULT_EMBEDDER, "input": ["I loved it"], "labels": ["positive", "negative"]})
async def create_classifications(request: Request) -> Response:
    body = await parse_body(request, ClassificationRequest)
    served: ServedModel = served_model(request, body.model)
    inputs = _inputs(body.input, state_of(request).settings.embed_max_inputs)
    await charge_input_tokens(request, served.loaded.tokenizer,
                              [text for item in inputs for text in ([item] if isinstance(item, str) else item)])
    labels = classify.check_labels(body.labels)
    scored, tokens = await _score(served, inputs, labels, state_of(request).thread_work)
    state_of(request).usage.record(caller_of(request).principal, served.id, "classifications",
                                   prompt_tokens=tokens, inputs=len(inputs))
    data = [Classification(index=i, label=s.label, score=s.scores[s.label], scores=s.scores)
            for i, s in enumerate(scored)]
    return json_response(Classifications(model=body.model, data=data,
                                         usage=Usage(prompt_tokens=tokens, total_tokens=tokens)))

