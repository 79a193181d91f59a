"""`GET /v1/models` and `GET /v1/models/{id}`, limited to the models the API key may use;
`DELETE /v1/models/{id}` of a fine-tuned model of the caller's (base models cannot be deleted)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from maas_sdk import protocol as p
from maas_sdk.protocol import ModelDeleted, ModelList
from reference_server.errors import Forbidden, NotFound
from reference_server.http.middleware.auth import caller_of, require_model
from reference_server.http.parsing import json_response, served_model
from reference_server.http.routes import _query
from reference_server.http.routing import RouteTable, link, path_param
from reference_server.state import state_of
from reference_server.storage import ids

table = RouteTable("models")


@table.route("GET", "/v1/models", "List the models this API key may use.", response=p.ModelList,
             links=(link("GET /v1/models/{model_id}", model_id="$response.body#/data/0/id"),))
async def list_models(request: Request) -> Response:
    caller = caller_of(request)
    served = [m for m in state_of(request).registry.list_for(caller.principal) if caller.may_use(m.id)]
    return json_response(ModelList(data=[m.describe() for m in served]))


@table.route("GET", "/v1/models/{model_id:path}", "Describe one model.", response=p.Model,
             params=(path_param("model_id", "model"),), errors=(403, 404))
async def retrieve_model(request: Request) -> Response:
    model_id = request.path_params["model_id"]
    require_model(request, model_id)
    served = served_model(request, model_id)
    return json_response(served.describe())


@table.route("DELETE", "/v1/models/{model_id:path}", "Delete one of your fine-tuned models (and its files).",
             response=p.ModelDeleted, params=(path_param("model_id", "model"),), errors=(403, 404))
async def delete_model(request: Request) -> Response:
    """Fine-tuned models are named `ft:<base>:<suffix>:<job-id>`; the job says whose it is."""
    model_id = request.path_params["model_id"]
    require_model(request, model_id)
    state = state_of(request)
    job_id = model_id.rsplit(":", 1)[-1] if model_id.startswith("ft:") else ""
    job = await state.storage.db.get_job(job_id, _query.principal(request)) if ids.is_valid(ids.JOB, job_id) else None
    if job is not None and job.fine_tuned_model == model_id and not state.fine_tuning.model_deleted(job):
        await state.fine_tuning.delete_model(job)
        return json_response(ModelDeleted(id=model_id))
    served = next((m for m in state.registry.list() if m.id == model_id), None)
    if served is not None and served.owner is None:
        what = "a base model" if served.adapter is None else "an adapter the server's operator serves"
        raise Forbidden(f"The model '{model_id}' is {what}; only fine-tuned models can be deleted.",
                        param="model", code="model_not_deletable")
    raise NotFound(f"The model '{model_id}' does not exist.", param="model", code="model_not_found")
