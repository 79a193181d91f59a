"""`POST /v1/evaluations`: metrics of a served model on a labelled JSONL file of the caller's.

Classifiers get `accuracy` and macro `f1` on classification data; generators get `loss`,
`perplexity` and `token_accuracy` on chat or prompt/completion data, measured on the completion
tokens exactly as fine-tuning measures its validation loss. The work runs in a thread, in
batches, so other requests keep being served meanwhile.
"""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import Response

from maas_sdk import protocol as p
from maas_sdk.protocol import Evaluation, EvaluationRequest
from reference_server import datasets
from reference_server.http.parsing import json_response, parse_body, served_model
from reference_server.http.routes import _query
from reference_server.http.routing import BODY_ERRORS, RouteTable
from reference_server.inference.adapted import adapted, batched_classifier
from reference_server.inference.tasks import evaluate
from reference_server.state import state_of

table = RouteTable("nlu")



@table.route("POST", "/v1/evaluations", "Measure a model on a labelled file of yours.",
             request=p.EvaluationRequest, response=p.Evaluation, errors=BODY_ERRORS)
async def create_evaluation(request: Request) -> Response:
    body = await parse_body(request, EvaluationRequest)
    state = state_of(request)
    served = served_model(request, body.model)
    record = await state.storage.owned_file(_query.principal(request), body.file, param="file")
    info, records = await asyncio.to_thread(datasets.load, state.storage.layout.file_path(record.id))
    on_batcher = batched_classifier(served)
    if on_batcher is not None:  # an adapter and head on the base encoder's batcher
        batcher, source = on_batcher
        logits, _ = await batcher.classify(evaluate.classifier_inputs(info, records), source)
        metrics = evaluate.classifier_metrics(records, list(source.labels), logits)
    else:
        metrics = await state.thread_work.run(adapted(served, evaluate.evaluate), served.loaded, served.task, info,
                                              records)
    return json_response(Evaluation(model=body.model, file=record.id, metrics=metrics, num_examples=len(records)))

