"""The app factory: `create_app(settings)` wires settings, middleware, routes and services.

Services (model loading, the fine-tuning worker, ...) start in the lifespan in order
and stop in reverse order, so nothing heavy happens at import time and the app can be
hosted by any ASGI server.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Protocol

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.routing import BaseRoute

from reference_server.http.errors import install_error_handlers
from reference_server.http.metrics import MetricsMiddleware, ServerMetrics
from reference_server.http.middleware.auth import APIKeyMiddleware, KeyRing
from reference_server.http.middleware.crosssite import CrossSiteMiddleware
from reference_server.http.middleware.disconnect import DisconnectMiddleware
from reference_server.http.middleware.draining import Drainer, LifecycleMiddleware
from reference_server.http.middleware.ratelimit import RateLimitMiddleware, RateLimits
from reference_server.http.middleware.request_id import RequestIdMiddleware
from reference_server.http.middleware.timeouts import BodyTimeoutMiddleware
from reference_server.http.middleware.unhandled import UnhandledErrorMiddleware
from reference_server.inference.offload import ThreadWork
from reference_server.inference.registry import ModelRegistry
from reference_server.inference.service import ModelsService
from reference_server.settings import Settings
from reference_server.training.supervisor import FineTuningService


class Service(Protocol):
    async def start(self, app: Starlette) -> None: ...

    async def stop(self, app: Starlette) -> None: ...


def _routes() -> list[BaseRoute]:
    from reference_server.http import metrics, openapi
    from reference_server.http.routes import (
        chat,
        classifications,
        completions,
        embeddings,
        evaluations,
        files,
        fine_tuning,
        health,
        models,
        tokenize,
    )

    routes: list[BaseRoute] = []
    for module in (health, metrics, openapi, models, completions, chat, embeddings,
                   files, fine_tuning, classifications, tokenize, evaluations):
        routes.extend(module.routes)
    return routes


def create_app(settings: Settings | None = None) -> Starlette:
    settings = settings or Settings()
    logging.getLogger("reference_server").setLevel(settings.log_level.upper())
    registry = ModelRegistry()
    metrics = ServerMetrics()
    models_service = ModelsService(settings, registry)
    services: list[Service] = [models_service, FineTuningService(settings, registry)]

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        started: list[Service] = []
        try:
            for service in services:
                await service.start(app)
                started.append(service)
            yield
        finally:
            for service in reversed(started):
                await service.stop(app)

    drainer = Drainer()
    rate_limits = RateLimits.from_settings(settings)
    cors = [Middleware(CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["*"],
                       allow_headers=["*"], expose_headers=["x-request-id", "retry-after"])]
    keys = KeyRing.from_settings(settings)
    app = Starlette(
        routes=_routes(),
        middleware=[
            Middleware(RequestIdMiddleware),
            Middleware(UnhandledErrorMiddleware),
            Middleware(MetricsMiddleware, metrics=metrics),
            Middleware(CrossSiteMiddleware, keyless=not keys, allowed_hosts=settings.allowed_hosts,
                       cors_origins=settings.cors_origins),
            *(cors if settings.cors_origins else []),
            Middleware(LifecycleMiddleware, drainer=drainer),
            Middleware(DisconnectMiddleware),
            Middleware(BodyTimeoutMiddleware, seconds=settings.body_timeout),
            Middleware(APIKeyMiddleware, keys=keys),
            Middleware(RateLimitMiddleware, limits=rate_limits),
        ],
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.registry = registry
    app.state.metrics = metrics
    app.state.models_service = models_service
    app.state.drainer = drainer
    app.state.draining = False
    app.state.rate_limits = rate_limits
    app.state.thread_work = ThreadWork(settings.max_running, settings.max_queued)
    app.state.uploads = asyncio.Semaphore(settings.max_concurrent_uploads)
    app.state.services = services
    install_error_handlers(app)
    return app
