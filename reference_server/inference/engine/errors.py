"""Errors the engines raise to their callers, as domain errors so HTTP maps them once."""

from __future__ import annotations

from maas_sdk.protocol.vocabulary import RETRY_AFTER_OVERLOADED, RETRY_AFTER_STOPPING
from reference_server.errors import Conflict, Overloaded, Unavailable


class QueueFullError(Overloaded):
    """The engine's waiting queue is at its bound; the caller should retry later (HTTP 429)."""

    def __init__(self, message: str) -> None:
        super().__init__(f"The server is overloaded ({message}); retry shortly.", code="overloaded",
                         retry_after=RETRY_AFTER_OVERLOADED)


class EngineStoppedError(Unavailable, RuntimeError):
    """The engine is not running (not started yet, or stopped): no work can be accepted or finished.

    Callers are told only that the model is shutting down; `str()` keeps the detail for the log."""

    def __init__(self, detail: str) -> None:
        super().__init__("The model is shutting down.", code="unavailable", retry_after=RETRY_AFTER_STOPPING)
        self.args = (detail,)


class GenerationError(RuntimeError):
    """A request failed inside the engine; `__cause__` holds the original exception."""


class AdapterUnusableError(Conflict):
    """A fine-tuned model's adapter cannot be loaded (corrupt, for another base model, too large a
    rank): requests for that model only fail, with a 409 that names no server path (the log has
    the detail)."""

    def __init__(self, model: str) -> None:
        super().__init__(f"The model '{model}' cannot be served: its adapter could not be loaded. "
                         "Fine-tune it again or delete it.", param="model", code="model_unusable")
