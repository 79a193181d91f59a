"""The server's own routes, open to every caller: liveness (`/health`), readiness (`/ready`: 503
until every model is loaded and while draining), Prometheus metrics and the OpenAPI document.

Being open to anyone, they name the base models only: readiness counts the fine-tuned ones, and
metrics label them all "fine-tuned" (a fine-tuned model's id is its owner's business). A data
directory short of `MAAS_MIN_FREE_BYTES` makes readiness 503 `storage_full`.
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from maas_sdk.protocol.vocabulary import (
    RETRY_AFTER_DRAINING,
    RETRY_AFTER_LOAD_FAILED,
    RETRY_AFTER_LOADING,
)
from reference_server.http.errors import HTTPError
from reference_server.http.openapi import openapi_document
from reference_server.http.routing import RouteTable
from reference_server.state import state_of
from reference_server.storage import space

table = RouteTable("server")
_STATUS = {"type": "object", "properties": {"status": {"type": "string"}}, "required": ["status"]}
_READY = {
    "type": "object",
    "properties": {"status": {"const": "ready"}, "models": {"type": "array", "items": {"type": "string"}},
                   "fine_tuned_models": {"type": "integer"}},
    "required": ["status", "models", "fine_tuned_models"],
}



@table.route("GET", "/health", "Liveness: answers as soon as the process serves HTTP.",
             response_schema=_STATUS)
async def health(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


@table.route("GET", "/ready", "Readiness: 200 once every model is loaded, 503 while loading or draining.",
             response_schema=_READY, errors=(503,))
async def ready(request: Request) -> Response:
    state = state_of(request)
    if state.models.error is not None:
        raise HTTPError(503, "Model loading failed; see the server log.", code="load_failed",
                        headers={"retry-after": str(RETRY_AFTER_LOAD_FAILED)})
    if not state.models.ready.is_set():
        raise HTTPError(503, "Models are still loading.", code="loading",
                        headers={"retry-after": str(RETRY_AFTER_LOADING)})
    if not state.fine_tuning.ready.is_set():
        raise HTTPError(503, "Fine-tuned models are still loading.", code="loading",
                        headers={"retry-after": str(RETRY_AFTER_LOADING)})
    if state.drainer.draining:
        raise HTTPError(503, "The server is shutting down.", code="draining",
                        headers={"retry-after": str(RETRY_AFTER_DRAINING)})
    free = space.free_bytes(state.storage.layout)
    if free < state.settings.min_free_bytes:
        raise HTTPError(503, f"The data directory has {free} bytes free, less than the "
                        f"{state.settings.min_free_bytes} it needs (MAAS_MIN_FREE_BYTES): uploads and fine-tuning "
                        "fail until space is freed.", code="storage_full", headers={"retry-after": "30"})
    served = state.registry.list()
    models = [m.id for m in served if m.owner is None]
    return JSONResponse({"status": "ready", "models": models, "fine_tuned_models": len(served) - len(models)})



@table.route("GET", "/metrics", "Prometheus metrics.", raw="text/plain")
async def metrics_endpoint(request: Request) -> Response:
    state = state_of(request)
    state.metrics.refresh_gauges(state.registry)
    state.metrics.refresh_storage(state.storage.layout, state.settings.min_free_bytes)
    return Response(state.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)


@table.route("GET", "/openapi.json", "This document.", response_schema={"type": "object"})
async def openapi_endpoint(request: Request) -> Response:
    return JSONResponse(openapi_document(state_of(request).settings))
