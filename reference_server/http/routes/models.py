"""`GET /v1/models` and `GET /v1/models/{id}`, limited to the models the API key may use."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from maas_sdk import protocol as p
from maas_sdk.protocol import ModelList
from reference_server.http.middleware.auth import caller_of, require_model
from reference_server.http.parsing import json_response, served_model
from reference_server.http.routing import RouteTable, path_param
from reference_server.state import state_of

table = RouteTable("models")



@table.route("GET", "/v1/models", "List the models this API key may use.", response=p.ModelList)
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

