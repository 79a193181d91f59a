"""`AppState`: every service the routes use, typed, built once by the composition root
(`reference_server.app`) and reached by routes through `state_of(request)` only."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:  # imported for the types only, so any layer can import this module
    from reference_server.batch.service import BatchService
    from reference_server.http.metrics import ServerMetrics
    from reference_server.http.middleware.draining import Drainer
    from reference_server.http.middleware.ratelimit import RateLimits
    from reference_server.inference.offload import ThreadWork
    from reference_server.inference.registry import ModelRegistry
    from reference_server.inference.service import ModelsService
    from reference_server.settings import Settings
    from reference_server.storage.service import StorageService
    from reference_server.storage.usage import UsageRecorder
    from reference_server.training.supervisor import FineTuningService


@dataclass(frozen=True)
class AppState:
    settings: Settings
    registry: ModelRegistry
    models: ModelsService
    storage: StorageService
    fine_tuning: FineTuningService
    batches: BatchService
    metrics: ServerMetrics
    drainer: Drainer
    rate_limits: RateLimits
    thread_work: ThreadWork
    usage: UsageRecorder


class _HasApp(Protocol):
    @property
    def app(self) -> Any: ...


def state_of(request: _HasApp) -> AppState:
    """The state of the app serving `request`."""
    return state_of_app(request.app)


def state_of_app(app: Any) -> AppState:
    """The state `reference_server.app.create_app` gave `app`."""
    state = app.state.maas
    assert isinstance(state, AppState)
    return state
