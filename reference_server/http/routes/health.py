"""Liveness (`/health`) and readiness (`/ready`: 503 until every model is loaded).

Both are open to anyone, so readiness names the base models only and counts the fine-tuned
ones: a fine-tuned model's id is its owner's business. A data directory short of
`MAAS_MIN_FREE_BYTES` makes readiness 503 `storage_full`.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from reference_server.http.errors import APIError
from reference_server.storage import DataLayout, space


async def health(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def ready(request: Request) -> Response:
    service = request.app.state.models_service
    if service.error is not None:
        raise APIError(503, "Model loading failed; see the server log.", code="load_failed",
                       headers={"retry-after": "30"})
    if not service.ready.is_set():
        raise APIError(503, "Models are still loading.", code="loading", headers={"retry-after": "2"})
    fine_tuning = getattr(request.app.state, "fine_tuning", None)
    if fine_tuning is not None and not fine_tuning.ready.is_set():
        raise APIError(503, "Fine-tuned models are still loading.", code="loading", headers={"retry-after": "2"})
    draining = getattr(request.app.state, "draining", False)
    if draining:
        raise APIError(503, "The server is shutting down.", code="draining", headers={"retry-after": "5"})
    settings = request.app.state.settings
    free = space.free_bytes(DataLayout(settings.data_dir))
    if free < settings.min_free_bytes:
        raise APIError(503, f"The data directory has {free} bytes free, less than the {settings.min_free_bytes} "
                       "it needs (MAAS_MIN_FREE_BYTES): uploads and fine-tuning fail until space is freed.",
                       code="storage_full", headers={"retry-after": "30"})
    served = request.app.state.registry.list()
    models = [m.id for m in served if m.owner is None]
    return JSONResponse({"status": "ready", "models": models, "fine_tuned_models": len(served) - len(models)})


routes = [
    Route("/health", health, methods=["GET"]),
    Route("/ready", ready, methods=["GET"]),
]
