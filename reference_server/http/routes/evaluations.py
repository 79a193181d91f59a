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
from starlette.routing import Route

from maas_sdk.protocol import Evaluation, EvaluationRequest
from reference_server import datasets
from reference_server.http.errors import bad_request
from reference_server.http.parsing import json_response, parse_body, served_model
from reference_server.http.routes import _query
from reference_server.inference import tasks as nlu
from reference_server.storage import FileRecord, ids
from reference_server.training.supervisor import FineTuningService


async def create_evaluation(request: Request) -> Response:
    body = await parse_body(request, EvaluationRequest)
    served = served_model(request, body.model)
    service: FineTuningService = request.app.state.fine_tuning
    record: FileRecord | None = None
    if ids.is_valid(ids.FILE, body.file):
        record = await service.db.get_file(body.file, _query.principal(request))
    if record is None:
        raise bad_request(f"No such file: {body.file}", param="file", code="file_not_found")
    try:
        info, records = await asyncio.to_thread(datasets.load, service.layout.file_path(record.id))
        work = request.app.state.thread_work
        metrics = await work.run(nlu.evaluate, served.loaded, served.task, info, records)
    except nlu.NLUError as exc:
        raise bad_request(str(exc), param=exc.param) from None
    except (datasets.DatasetError, FileNotFoundError) as exc:
        raise bad_request(f"The file {record.id} cannot be read: {exc}", param="file") from None
    return json_response(Evaluation(model=body.model, file=record.id, metrics=metrics, num_examples=len(records)))


routes = [Route("/v1/evaluations", create_evaluation, methods=["POST"])]
