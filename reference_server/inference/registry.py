"""The models the server serves, by id, with the engine or batcher that runs each.

Routes look models up here; fine-tuned models are registered at run time. A fine-tuned model
belongs to the caller (principal) that trained it: every lookup names its caller, and to any
other caller the model does not exist, exactly like an unknown id. Base models (no owner) are
shared by every caller.
"""

from __future__ import annotations

import builtins
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from maas_sdk.protocol import Model
from reference_server.errors import InvalidRequest, NotFound

if TYPE_CHECKING:
    from reference_server.inference.engine.adapters import AdapterSource
    from reference_server.inference.engine.embeddings import EmbeddingBatcher
    from reference_server.inference.engine.generation import GenerationEngine
    from reference_server.inference.loading import LoadedModel
    from reference_server.inference.structured import StructuredBackend

TASK_ROUTES = {
    "generate": "completions and chat completions",
    "embed": "embeddings",
    "classify": "classifications",
}


@dataclass
class ServedModel:
    id: str
    task: str
    loaded: LoadedModel
    engine: GenerationEngine | None = None
    batcher: EmbeddingBatcher | None = None
    structured: StructuredBackend | None = None
    parent: str | None = None
    owner: str | None = None
    created: int = field(default_factory=lambda: int(time.time()))
    extra: dict[str, Any] = field(default_factory=dict)
    # A fine-tuned adapter served on its base model's engine (`engine`, `loaded` and `structured`
    # are the base model's); None for a model with weights of its own.
    adapter: AdapterSource | None = None

    def visible_to(self, caller: str) -> bool:
        return self.owner is None or self.owner == caller

    def describe(self) -> Model:
        loaded = self.loaded
        return Model(
            id=self.id,
            created=self.created,
            owned_by=self.owner or "maas",
            task=self.task,
            context_length=loaded.context_length,
            parameters=loaded.parameters,
            dtype=loaded.dtype,
            device=loaded.device,
            quantization=loaded.spec.quantization,
            parent=self.parent,
        )


class ModelRegistry:
    """Thread-safe map from model id to `ServedModel`."""

    def __init__(self) -> None:
        self._models: dict[str, ServedModel] = {}
        self._lock = threading.Lock()

    def register(self, served: ServedModel) -> None:
        with self._lock:
            self._models[served.id] = served

    def unregister(self, model_id: str) -> ServedModel | None:
        with self._lock:
            return self._models.pop(model_id, None)

    def serves(self, model_id: str) -> bool:
        with self._lock:
            return model_id in self._models

    def list(self) -> builtins.list[ServedModel]:
        """Every served model, whoever owns it (for the server itself, never for an answer)."""
        with self._lock:
            return list(self._models.values())

    def list_for(self, caller: str) -> builtins.list[ServedModel]:
        """The models `caller` may see: the base models and its own fine-tuned ones."""
        return [m for m in self.list() if m.visible_to(caller)]

    def get(self, model_id: str, caller: str) -> ServedModel:
        """The model `model_id` as `caller` sees it; 404 if unknown or another caller's."""
        with self._lock:
            served = self._models.get(model_id)
        if served is None or not served.visible_to(caller):
            raise NotFound(f"The model '{model_id}' does not exist.", param="model", code="model_not_found")
        return served

    def get_for(self, model_id: str, task: str, caller: str) -> ServedModel:
        """The model, checked to serve `task`; 400 naming `model` otherwise."""
        served = self.get(model_id, caller)
        if served.task != task:
            raise InvalidRequest(
                f"The model '{model_id}' serves {TASK_ROUTES.get(served.task, served.task)}, "
                f"not {TASK_ROUTES.get(task, task)}.",
                param="model",
                code="model_task_mismatch",
            )
        return served
