"""`GET /v1/models` and `GET /v1/models/{id}`."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from maas_sdk.protocol import ModelList
from reference_server.http import json_response


async def list_models(request: Request) -> Response:
    registry = request.app.state.registry
    return json_response(ModelList(data=[m.describe() for m in registry.list()]))


async def retrieve_model(request: Request) -> Response:
    served = request.app.state.registry.get(request.path_params["model_id"])
    return json_response(served.describe())


routes = [
    Route("/v1/models", list_models, methods=["GET"]),
    Route("/v1/models/{model_id:path}", retrieve_model, methods=["GET"]),
]
