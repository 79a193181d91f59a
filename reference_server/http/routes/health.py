"""Liveness (`/health`) and readiness (`/ready`: 503 until every model is loaded)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from reference_server.http.errors import APIError


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
    models = [m.id for m in request.app.state.registry.list()]
    return JSONResponse({"status": "ready", "models": models})


routes = [
    Route("/health", health, methods=["GET"]),
    Route("/ready", ready, methods=["GET"]),
]
