"""The composition root: `create_app(settings)` builds every service once, wires them into the
typed `AppState`, and mounts the routes: the server's own (health, readiness, metrics, the
OpenAPI document) at the root, the API under `/v1` behind its middleware (availability,
cancelling abandoned requests, body timeouts, API keys, rate limits). Around everything: request
ids, unhandled errors, metrics and the cross-site rules (and CORS when configured).

Services start in the lifespan in order and stop in reverse order, so nothing heavy happens at
import time and the app can be hosted by any ASGI server.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Protocol

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.routing import BaseRoute, Mount, Route

from reference_server.batch.service import BatchService
from reference_server.http.batch_dispatch import InProcessDispatcher
from reference_server.http.errors import install_error_handlers
from reference_server.http.metrics import ServerMetrics
from reference_server.http.middleware.access_log import AccessLogMiddleware
from reference_server.http.middleware.anthropic_errors import AnthropicErrorMiddleware
from reference_server.http.middleware.auth import APIKeyMiddleware, KeyRing
from reference_server.http.middleware.crosssite import CrossSiteMiddleware
from reference_server.http.middleware.disconnect import DisconnectMiddleware
from reference_server.http.middleware.draining import Drainer, LifecycleMiddleware
from reference_server.http.middleware.metrics import MetricsMiddleware
from reference_server.http.middleware.ratelimit import RateLimitMiddleware, RateLimits
from reference_server.http.middleware.replica import ReplicaMiddleware, default_replica_name
from reference_server.http.middleware.request_id import RequestIdMiddleware
from reference_server.http.middleware.timeouts import BodyTimeoutMiddleware
from reference_server.http.middleware.unhandled import UnhandledErrorMiddleware
from reference_server.http.routes import OPERATIONS, playground
from reference_server.http.routing import V1, routes_of
from reference_server.inference.offload import ThreadWork
from reference_server.inference.registry import ModelRegistry
from reference_server.inference.service import ModelsService
from reference_server.settings import Settings
from reference_server.state import AppState
from reference_server.storage.layout import DataLayout
from reference_server.storage.service import StorageService
from reference_server.storage.usage import UsageRecorder
from reference_server.training.supervisor import FineTuningService


class Service(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...


def build_state(settings: Settings) -> AppState:
    registry = ModelRegistry()
    models = ModelsService(settings, registry)
    storage = StorageService(DataLayout(settings.data_dir), settings.database_url, settings.max_concurrent_uploads)
    drainer = Drainer()
    usage = UsageRecorder(storage, settings.usage_flush_seconds)
    return AppState(
        settings=settings,
        registry=registry,
        models=models,
        storage=storage,
        fine_tuning=FineTuningService(settings, storage, models, usage, draining=lambda: drainer.draining),
        batches=BatchService(settings, storage, models, draining=lambda: drainer.draining),
        metrics=ServerMetrics(replica=settings.replica),
        drainer=drainer,
        rate_limits=RateLimits.from_settings(settings),
        thread_work=ThreadWork(settings.max_running, settings.max_queued),
        usage=usage,
    )


def _routes(state: AppState) -> list[BaseRoute]:
    served = [op for op in OPERATIONS if state.settings.playground or op not in playground.table.operations]
    root = [op for op in served if not op.authenticated]
    api = [op for op in served if op.path.startswith(V1)]
    # vLLM's tokenizer routes live at the root but are keyed like `/v1`.
    keyed_root = [op for op in served if op.authenticated and not op.path.startswith(V1)]
    v1_middleware = [
        Middleware(LifecycleMiddleware, drainer=state.drainer, loading=state.models),
        Middleware(DisconnectMiddleware),
        Middleware(BodyTimeoutMiddleware, seconds=state.settings.body_timeout),
        Middleware(APIKeyMiddleware, keys=KeyRing.from_settings(state.settings)),
        Middleware(RateLimitMiddleware, limits=state.rate_limits),
    ]
    keyed = [Route(op.path, op.endpoint, methods=[op.method], middleware=v1_middleware) for op in keyed_root]
    return [*routes_of(root), *keyed, Mount(V1, routes=routes_of(api, prefix=V1), middleware=v1_middleware)]


@asynccontextmanager
async def running(state: AppState) -> AsyncIterator[None]:
    """The services of `state` started in order, and stopped in the reverse order (fine-tuning
    needs the store open, and counts usage until it stops; batches need both and stop first, while the
    engines can still end their lines). Whatever hosts the app, requests still in flight when it stops are
    ended cleanly first (a stream gets its `server_shutdown` event): a host that drains, like
    `maas serve` or Ray Serve, leaves none."""
    services: list[Service] = [state.models, state.storage, state.usage, state.fine_tuning, state.batches]
    started: list[Service] = []
    try:
        for service in services:
            await service.start()
            started.append(service)
        yield
    finally:
        if state.drainer.in_flight:
            await state.drainer.drain(0)
        for service in reversed(started):
            await service.stop()


def create_app(settings: Settings | None = None) -> Starlette:
    settings = settings or Settings()
    logging.getLogger("reference_server").setLevel(settings.log_level.upper())
    state = build_state(settings)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with running(state):
            yield

    cors = [Middleware(CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["*"],
                       allow_headers=["*"], expose_headers=["x-request-id", "request-id", "retry-after", "x-maas-ignored-params", "x-maas-replica"])]
    app = Starlette(
        routes=_routes(state),
        middleware=[
            Middleware(RequestIdMiddleware),
            Middleware(AnthropicErrorMiddleware),
            Middleware(UnhandledErrorMiddleware),
            Middleware(ReplicaMiddleware, replica=settings.replica or default_replica_name()),
            *([Middleware(AccessLogMiddleware)] if settings.access_log else []),
            Middleware(MetricsMiddleware, metrics=state.metrics),
            Middleware(CrossSiteMiddleware, keyless=not KeyRing.from_settings(settings),
                       allowed_hosts=settings.allowed_hosts, cors_origins=settings.cors_origins),
            *(cors if settings.cors_origins else []),
        ],
        lifespan=lifespan,
    )
    app.state.maas = state
    state.batches.attach(InProcessDispatcher(app, KeyRing.from_settings(settings)))
    install_error_handlers(app)
    return app
