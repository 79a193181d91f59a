"""Loads the configured models in the background and runs their engines.

Loading happens off the event loop after the server has started, so `/health`
answers at once and `/ready` answers 503 until every model is served.

A fine-tuned LoRA adapter (a PEFT folder) is not a model of its own: it is served on its base
generator's engine (`ServedModel.adapter`), read into memory when a request needs it, so a
thousand adapters cost the ones in use, not a thousand copies of the base. The operator's
adapters (`MAAS_LORA_MODULES`) are read at start, each checked against the generator it
fits: a corrupt one, one of another base model or of too large a rank stops the start with a
message that names it. A fine-tuned classifier kept as an adapter (its encoder's LoRA plus its
head) is served the same way, on its base encoder's batcher (`engine/heads.py`).
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from reference_server.inference.engine.lora import CONFIG_FILE, AdapterError, read_config
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
            own_forward=settings.engine_forward == "auto",
            max_loras=settings.max_loras,
            max_lora_rank=settings.max_lora_rank,
            background_reserve=settings.batch_reserved_rows,
            compile_buckets=settings.engine_compile_buckets if settings.engine_compile == "auto" else (),
            compile_cache_dir=settings.cache_dir / "inductor",
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
            max_loras=settings.max_loras,
            max_lora_rank=settings.max_lora_rank,
        )
        served.batcher.start()
    return served


async def stop_served(served: ServedModel) -> None:
    if served.adapter is not None:  # the engine is its base model's
        return
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
            for entry in self.settings.lora_modules:
                name, _, path = entry.partition("=")
                await asyncio.to_thread(self.serve_operator_adapter, name.strip(), Path(path.strip()).expanduser())
            self.ready.set()
        except Exception as exc:  # reported by /ready; the process keeps serving health
            self.error = exc
            logger.exception("model loading failed")

    async def serve(self, spec: ModelSpec, *, parent: str, owner: str, merged_lora_on: str | None = None,
                    labels: list[str] | None = None) -> None:
        """Serve `spec` (a fine-tuned model's folder), unless it is served already: an adapter
        folder on its base model's engine (a classifier's, whose head has `labels`, on its base
        encoder's batcher), and so a LoRA fine-tune saved merged (before adapters were kept)
        whose base model folder `merged_lora_on` still exists; any other model folder loaded
        with an engine of its own."""
        if self.registry.serves(spec.id):
            return
        if spec.path is not None and spec.task == "classify" and (Path(spec.path) / CONFIG_FILE).is_file():
            self._serve_classifier(spec.id, Path(spec.path), parent=parent, owner=owner, labels=labels or [])
            return
        if spec.path is not None and (Path(spec.path) / CONFIG_FILE).is_file():
            if self._generator(parent) is None:  # a process without base models (a cluster's supervisor)
                read_config(Path(spec.path), max_rank=self.settings.max_lora_rank)
                logger.info("%s is served where its base model %s is, not here", spec.id, parent)
                return
            self.registry.register(self._adapter_model(spec.id, Path(spec.path), parent=parent, owner=owner))
            return
        if spec.path is not None and merged_lora_on is not None and Path(merged_lora_on).is_dir():
            self.registry.register(self._adapter_model(spec.id, Path(spec.path), parent=parent, owner=owner,
                                                       merged_on=Path(merged_lora_on)))
            return
        self.registry.register(await start_in_own_thread(self._load, spec, {"parent": parent, "owner": owner}))

    def _adapter_model(self, model_id: str, folder: Path, *, parent: str, owner: str | None,
                       merged_on: Path | None = None) -> ServedModel:
        """`folder`'s adapter served as `model_id` on the generator `parent`; its config is checked
        now, its weights are read when a request needs them."""
        from reference_server.inference.engine.adapters import AdapterSource

        base = self._generator(parent)
        if base is None:
            raise AdapterError(f"the base model {parent!r} of {model_id!r} is not a generator served here")
        if merged_on is None:
            read_config(folder, max_rank=self.settings.max_lora_rank)
        return ServedModel(id=model_id, task="generate", loaded=base.loaded, engine=base.engine,
                           structured=base.structured, parent=parent, owner=owner,
                           adapter=AdapterSource(model_id, folder, merged_on))

    def _serve_classifier(self, model_id: str, folder: Path, *, parent: str, owner: str, labels: list[str]) -> None:
        """`folder`'s classifier (adapter and head) served as `model_id` on the encoder `parent`'s
        batcher; its config is checked now, its weights are read when a request needs them."""
        from reference_server.inference.engine.heads import ClassifierSource

        read_config(folder, max_rank=self.settings.max_lora_rank)
        if len(labels) < 2:
            raise AdapterError(f"the classifier {model_id!r} has no labels recorded with it")
        base = next((m for m in self.registry.list() if m.id == parent and m.owner is None), None)
        if base is None or base.batcher is None or base.adapter is not None:
            logger.info("%s is served where its base encoder %s is, not here", model_id, parent)
            return
        self.registry.register(ServedModel(id=model_id, task="classify", loaded=base.loaded, batcher=base.batcher,
                                           parent=parent, owner=owner,
                                           adapter=ClassifierSource(model_id, folder, labels=tuple(labels))))

    def _generator(self, model_id: str) -> ServedModel | None:
        """The base generator `model_id` if this process serves it."""
        served = next((m for m in self.registry.list() if m.id == model_id and m.owner is None), None)
        return served if served is not None and served.engine is not None and served.adapter is None else None

    def serve_operator_adapter(self, name: str, folder: Path) -> None:
        """Serve the operator's adapter `name` on the generator it fits, read now; AdapterError
        (naming it) when it fits none."""
        from reference_server.inference.engine.adapters import AdapterSource

        try:
            config = read_config(folder, max_rank=self.settings.max_lora_rank)
        except AdapterError as exc:
            raise AdapterError(f"lora_modules: the adapter {name!r} is refused: {exc}", param=exc.param) from exc
        if self.registry.serves(name):
            raise AdapterError(f"lora_modules: the adapter name {name!r} is already a served model's")
        generators = [m for m in self.registry.list() if m.engine is not None and m.adapter is None]
        wanted = str(config.get("base_model_name_or_path") or "")
        generators.sort(key=lambda m: m.id != wanted)  # the base the adapter names, if served, first
        problems: list[str] = []
        for base in generators:
            assert base.engine is not None
            try:
                base.engine.adapters.load(AdapterSource(name, folder))
            except AdapterError as exc:
                problems.append(f"on {base.id}: {exc}")
                continue
            self.registry.register(self._adapter_model(name, folder, parent=base.id, owner=None))
            logger.info("adapter %s served on %s", name, base.id)
            return
        raise AdapterError(f"lora_modules: the adapter {name!r} is refused: "
                           + ("; ".join(problems) or "no generator is served here"))

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
        if served.adapter is not None and served.engine is not None:
            served.engine.adapters.forget(served.adapter.name)
        if served.adapter is not None and served.batcher is not None:
            served.batcher.adapters.forget(served.adapter.name)
        await stop_served(served)
        return True

    async def stop(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
        for served in self.registry.list():
            await stop_served(served)

