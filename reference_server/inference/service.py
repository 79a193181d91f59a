"""Loads the configured models in the background and runs their engines.

Loading happens off the event loop after the server has started, so `/health`
answers at once and `/ready` answers 503 until every model is served.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from reference_server.inference.loading import ModelSpec
from reference_server.inference.offload import start_in_own_thread
from reference_server.inference.registry import ModelRegistry, ServedModel
from reference_server.settings import Settings

if TYPE_CHECKING:
    from reference_server.inference.loading import LoadedModel

logger = logging.getLogger("reference_server")


def configured_specs(settings: Settings) -> list[ModelSpec]:
    from reference_server.inference.loading import default_specs

    specs: list[ModelSpec] = []
    if settings.default_models:
        for spec in default_specs():
            if settings.enabled_models and spec.id not in settings.enabled_models:
                continue
            if settings.dtype != "auto" and spec.dtype == "auto":
                spec.dtype = settings.dtype
            if settings.quantization and spec.task == "generate" and spec.quantization is None:
                spec.quantization = settings.quantization
            specs.append(spec)
    specs.extend(spec.model_copy() for spec in settings.models)
    return specs


def serve_loaded(loaded: LoadedModel, settings: Settings, **extra: object) -> ServedModel:
    """Wrap a loaded model with the engine or batcher for its task, started."""
    from reference_server.inference.engine.embeddings import EmbeddingBatcher
    from reference_server.inference.engine.generation import GenerationEngine
    from reference_server.inference.structured import StructuredBackend

    served = ServedModel(id=loaded.spec.id, task=loaded.spec.task, loaded=loaded, **extra)  # type: ignore[arg-type]
    if loaded.task == "generate":
        served.engine = GenerationEngine(
            loaded,
            max_running=settings.max_running,
            max_batch_tokens=settings.max_batch_tokens,
            max_queued=settings.max_queued,
            prefill_chunk_tokens=settings.prefill_chunk_tokens,
            prefix_cache_bytes=settings.prefix_cache_mb * 2**20,
            packed_weights=settings.packed_weights,
            background_reserve=settings.batch_reserved_rows,
        )
        served.engine.start()
        served.structured = StructuredBackend(
            loaded.tokenizer,
            vocab_size=int(loaded.model.config.get_text_config().vocab_size),
            stop_token_ids=served.engine.eos_token_ids,
            compile_timeout_s=settings.grammar_compile_timeout,
            max_grammar_bytes=settings.max_grammar_bytes,
        )
    elif loaded.task == "embed":
        served.batcher = EmbeddingBatcher(
            loaded,
            max_batch_size=settings.embed_max_batch_size,
            max_batch_tokens=settings.embed_max_batch_tokens,
            max_queued=settings.embed_max_queued,
            streams=settings.embed_streams,
            packed_weights=settings.packed_weights,
        )
        served.batcher.start()
    return served


async def stop_served(served: ServedModel) -> None:
    if served.engine is not None:
        await served.engine.stop()
    if served.structured is not None:
        served.structured.close()
    if served.batcher is not None:
        await served.batcher.stop()


class ModelsService:
    """Owns the registry's lifetime: load at start (in a thread), stop engines at shutdown."""

    def __init__(self, settings: Settings, registry: ModelRegistry) -> None:
        self.settings = settings
        self.registry = registry
        self.ready = asyncio.Event()
        self.error: BaseException | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._load_all())

    async def _load_all(self) -> None:
        from reference_server.inference.loading import configure_threads

        try:
            configure_threads(self.settings.threads)
            for spec in configured_specs(self.settings):
                logger.info("loading model %s (%s)", spec.id, spec.task)
                served = await start_in_own_thread(self._load, spec, {})
                self.registry.register(served)
                logger.info("model %s ready on %s (%s)", spec.id, served.loaded.device, served.loaded.dtype)
            self.ready.set()
        except Exception as exc:  # reported by /ready; the process keeps serving health
            self.error = exc
            logger.exception("model loading failed")

    async def serve(self, spec: ModelSpec, *, parent: str, owner: str) -> None:
        """Load `spec` (a fine-tuned model's folder) and serve it, unless it is served already."""
        if self.registry.serves(spec.id):
            return
        self.registry.register(await start_in_own_thread(self._load, spec, {"parent": parent, "owner": owner}))

    def _load(self, spec: ModelSpec, extra: dict[str, object]) -> ServedModel:
        """Load `spec` and start its engine, on a thread that ends afterwards (see
        `offload.start_in_own_thread`: loading runs torch's parallel operations, whose worker
        threads must not outlive it); the engines inherit the configured thread count."""
        from reference_server.inference.loading import configure_threads, load_model

        configure_threads(self.settings.threads)
        loaded = load_model(spec, cache_dir=self.settings.cache_dir, device=self.settings.device)
        return serve_loaded(loaded, self.settings, **extra)

    async def unserve(self, model_id: str) -> bool:
        """Stop serving `model_id` (requests in flight on it are aborted); False if not served."""
        served = self.registry.unregister(model_id)
        if served is None:
            return False
        await stop_served(served)
        return True

    async def stop(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
        for served in self.registry.list():
            await stop_served(served)

