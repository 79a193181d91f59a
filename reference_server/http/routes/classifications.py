"""`POST /v1/classifications`: the top label and every label's score for each input.

A classifier model scores its trained labels (or the subset named in `labels`); an embedder or
a generator classifies zero-shot among the given `labels` (see `reference_server.inference.tasks` for how).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from maas_sdk.protocol import Classification, ClassificationRequest, Classifications, Usage
from reference_server.http.errors import bad_request
from reference_server.http.middleware.ratelimit import charge_input_tokens
from reference_server.http.parsing import json_response, parse_body, served_model
from reference_server.inference import tasks as nlu
from reference_server.inference.offload import ThreadWork
from reference_server.inference.registry import ServedModel


def _inputs(raw: object, max_inputs: int) -> list[str]:
    items = [raw] if isinstance(raw, str) else list(raw)  # type: ignore[call-overload]
    if not items:
        raise bad_request("input must not be empty.", param="input")
    if len(items) > max_inputs:
        raise bad_request(f"input has {len(items)} items; at most {max_inputs} are allowed per call.",
                          param="input")
    for i, item in enumerate(items):
        if not item.strip():
            raise bad_request(f"input[{i}] is empty.", param=f"input[{i}]")
    return items


async def _score(served: ServedModel, inputs: list[str], labels: list[str] | None,
                 work: ThreadWork) -> tuple[list[nlu.Scored], int]:
    if served.task == "classify":
        return await work.run(nlu.classify_with_head, served.loaded, inputs, labels)
    if labels is None:
        raise bad_request(f"The model '{served.id}' is not a trained classifier; pass `labels` to classify "
                          "zero-shot among them.", param="labels", code="labels_required")
    if served.task == "embed" and served.batcher is not None:
        try:
            vectors, tokens = await served.batcher.embed(inputs + labels)
        except ValueError as exc:
            raise bad_request(str(exc), param="input") from None
        return nlu.zero_shot_by_similarity(vectors, len(inputs), labels), tokens
    if served.task == "generate":
        return await work.run(nlu.zero_shot_by_likelihood, served.loaded, inputs, labels)
    raise bad_request(f"The model '{served.id}' cannot classify.", param="model")


async def create_classifications(request: Request) -> Response:
    body = await parse_body(request, ClassificationRequest)
    served: ServedModel = served_model(request, body.model)
    inputs = _inputs(body.input, request.app.state.settings.embed_max_inputs)
    await charge_input_tokens(request, served.loaded.tokenizer, inputs)
    try:
        labels = nlu.check_labels(body.labels)
        scored, tokens = await _score(served, inputs, labels, request.app.state.thread_work)
    except nlu.NLUError as exc:
        raise bad_request(str(exc), param=exc.param) from None
    data = [Classification(index=i, label=s.label, score=s.scores[s.label], scores=s.scores)
            for i, s in enumerate(scored)]
    return json_response(Classifications(model=body.model, data=data,
                                         usage=Usage(prompt_tokens=tokens, total_tokens=tokens)))


routes = [Route("/v1/classifications", create_classifications, methods=["POST"])]
