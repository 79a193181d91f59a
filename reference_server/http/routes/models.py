"""`GET /v1/models` and `GET /v1/models/{id}`, limited to the models the API key may use: the
base models its allowlist names and its own fine-tuned models."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from maas_sdk.protocol import ModelList
from reference_server.http.middleware.auth import caller_of, require_model
from reference_server.http.parsing import json_response, served_model


async def list_models(request: Request) -> Response:
    caller = caller_of(request)
    served = [m for m in request.app.state.registry.list_for(caller.principal) if caller.may_use(m.id)]
    return json_response(ModelList(data=[m.describe() for m in served]))


async def retrieve_model(request: Request) -> Response:
    model_id = request.path_params["model_id"]
    require_model(request, model_id)
    return json_response(served_model(request, model_id).describe())


routes = [
    Route("/v1/models", list_models, methods=["GET"]),
    Route("/v1/models/{model_id:path}", retrieve_model, methods=["GET"]),
]
