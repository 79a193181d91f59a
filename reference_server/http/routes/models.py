"""`GET /v1/models` and `GET /v1/models/{id}`, limited to the models the API key may use;
`DELETE /v1/models/{id}` of a fine-tuned model of the caller's (base models cannot be deleted)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from maas_sdk.protocol import ModelDeleted, ModelList
from reference_server.http.errors import APIError, not_found
from reference_server.http.middleware.auth import caller_of, require_model
from reference_server.http.parsing import json_response
from reference_server.http.routes import _query
from reference_server.storage import ids
from reference_server.training.supervisor import FineTuningService


async def list_models(request: Request) -> Response:
    caller = caller_of(request)
    served = [m for m in request.app.state.registry.list() if caller.may_use(m.id)]
    return json_response(ModelList(data=[m.describe() for m in served]))


async def retrieve_model(request: Request) -> Response:
    model_id = request.path_params["model_id"]
    require_model(request, model_id)
    served = request.app.state.registry.get(model_id)
    return json_response(served.describe())


async def delete_model(request: Request) -> Response:
    """Fine-tuned models are named `ft:<base>:<suffix>:<job-id>`; the job says whose it is."""
    model_id = request.path_params["model_id"]
    require_model(request, model_id)
    service: FineTuningService = request.app.state.fine_tuning
    job_id = model_id.rsplit(":", 1)[-1] if model_id.startswith("ft:") else ""
    job = await service.db.get_job(job_id, _query.principal(request)) if ids.is_valid(ids.JOB, job_id) else None
    if job is not None and job.fine_tuned_model == model_id and not service.model_deleted(job):
        await service.delete_model(job)
        return json_response(ModelDeleted(id=model_id))
    served = next((m for m in request.app.state.registry.list() if m.id == model_id), None)
    if served is not None and served.parent is None:
        raise APIError(403, f"The model '{model_id}' is a base model; only fine-tuned models can be deleted.",
                       param="model", code="model_not_deletable")
    raise not_found(f"The model '{model_id}' does not exist.", param="model", code="model_not_found")


routes = [
    Route("/v1/models", list_models, methods=["GET"]),
    Route("/v1/models/{model_id:path}", retrieve_model, methods=["GET"]),
    Route("/v1/models/{model_id:path}", delete_model, methods=["DELETE"]),
]
