"""The app factory: `create_app(settings)` wires settings, middleware, routes and services.

Services (model loading, the fine-tuning worker, ...) start in the lifespan in order
and stop in reverse order, so nothing heavy happens at import time and the app can be
hosted by any ASGI server.
"""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from typing import AsyncIterator, List, Optional, Protocol

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import BaseRoute

from reference_server.errors import install_error_handlers
from reference_server.middleware import APIKeyMiddleware, RequestIdMiddleware
from reference_server.models_service import ModelsService
from reference_server.registry import ModelRegistry
from reference_server.settings import Settings


class Service(Protocol):
    async def start(self, app: Starlette) -> None: ...

    async def stop(self, app: Starlette) -> None: ...


def _routes() -> List[BaseRoute]:
    from reference_server.routes import chat, completions, embeddings, health, models

    routes: List[BaseRoute] = []
    for module in (health, models, completions, chat, embeddings):
        routes.extend(module.routes)
    return routes


def create_app(settings: Optional[Settings] = None) -> Starlette:
    settings = settings or Settings()
    logging.getLogger("reference_server").setLevel(settings.log_level.upper())
    registry = ModelRegistry()
    models_service = ModelsService(settings, registry)
    services: List[Service] = [models_service]

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        started: List[Service] = []
        try:
            for service in services:
                await service.start(app)
                started.append(service)
            yield
        finally:
            for service in reversed(started):
                await service.stop(app)

    app = Starlette(
        routes=_routes(),
        middleware=[
            Middleware(RequestIdMiddleware),
            Middleware(APIKeyMiddleware, keys=settings.api_keys),
        ],
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.registry = registry
    app.state.models_service = models_service
    app.state.services = services
    install_error_handlers(app)
    return app
