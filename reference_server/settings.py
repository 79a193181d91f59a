"""Server settings, read from `MAAS_*` environment variables (pydantic-settings)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from reference_server.inference.loading.spec import Dtype, ModelSpec, PackedWeights


def _user_cache() -> Path:
    return Path.home() / ".cache" / "maas"


class Settings(BaseSettings):
    """Every knob of the reference server. Each field `x` is set by the env var `MAAS_X`."""

    model_config = SettingsConfigDict(env_prefix="MAAS_", extra="ignore", populate_by_name=True)

    host: str = Field("127.0.0.1", description="Address to listen on (`maas serve --host`).")
    port: int = Field(8000, description="Port to listen on (`maas serve --port`).")

    # Models
    default_models: bool = Field(True, description="Serve the bundled default models.")
    enabled_models: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Comma-separated ids of default models to load (empty = all)."
    )
    models: Annotated[list[ModelSpec], NoDecode] = Field(
        default_factory=list, description="Extra models (local folders), as a JSON list of {id, path, task, ...}."
    )
    device: str | None = Field(None, description="cuda, cpu, ... (default: cuda when available).")
    dtype: Dtype = Field("auto", description="Default dtype: auto, float32, bfloat16, float16 (GPU).")
    quantization: Literal["int8", "int4"] | None = Field(
        None, description="Default weight-only quantization for generators (CPU): int8 or int4.")
    threads: int | None = Field(None, ge=1, description="torch compute threads (default: torch's choice).")
    cache_dir: Path = Field(default_factory=_user_cache, description="Models converted from GGUF.")
    data_dir: Path = Field(default_factory=lambda: _user_cache() / "data",
                           description="Uploaded files and model folders; every replica of a cluster mounts it.")
    database_url: str | None = Field(
        None, repr=False,
        description="postgresql://... shared by every replica (default: a SQLite file in data_dir).",
    )

    # Generation engine
    max_running: int = Field(16, ge=1, description="Sequences decoding together per generative model.")
    max_batch_tokens: int = Field(4096, ge=16, description="Prompt tokens prefilled in one step "
                                  "(with prefill_chunk_tokens, the smaller of the two).")
    max_queued: int = Field(256, ge=0, description="Requests waiting per model before 429.")
    prefill_chunk_tokens: int = Field(
        512, ge=0, description="Most prompt tokens prefilled in one step: while other sequences decode, "
        "longer prompts are prefilled in slices, each adding at most 0.75 decode steps' time to the others' step "
        "(0: prompts are prefilled whole, up to max_batch_tokens a step).")
    prefix_cache_mb: int = Field(
        256, ge=0, description="MiB of cached prompt prefixes reused by later prompts per model (0: off).")
    packed_weights: PackedWeights = Field(
        "auto", description="Linear weights of generators on CPU pre-packed for oneDNN: auto (where a measurement "
        "at load shows it faster), on, off.")
    engine_forward: Literal["auto", "transformers"] = Field(
        "auto", description="Generators' forward in the engine: auto (the engine's own for the Llama family, "
        "transformers' modules for the rest), transformers (transformers' modules for every model).")
    engine_compile: Literal["auto", "off"] = Field(
        "auto", description="Steps of the engine's own forward compiled by inductor on CPU, one graph per "
        "bucket of tokens, in the background after the server is ready (auto), or always eager (off).")
    engine_compile_buckets: Annotated[list[int], NoDecode] = Field(
        default_factory=lambda: [1, 2, 4, 8, 24], description="Comma-separated step sizes compiled, in tokens "
        "(a decoding row's one, a prompt slice's several), smallest first; a step runs in the smallest compiled "
        "bucket that holds its tokens (eager beyond the largest, with adapter rows, or with prompt tokens alone).")
    max_loras: int = Field(
        64, ge=1, description="Fine-tuned adapters each generator keeps in memory (least recently used ones leave; "
        "an adapter is read back from the data directory when a request needs it).")
    max_lora_rank: int = Field(64, ge=1, description="Largest LoRA rank a fine-tuning job or a served adapter may use.")
    lora_modules: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Comma-separated name=path PEFT adapter folders served at start on their "
        "base generator, visible to every key (`maas serve --lora-modules`).")
    max_tokens_default: int = Field(256, ge=1, description="max_tokens when a request omits it.")
    max_tokens_limit: int = Field(4096, ge=1, description="Largest max_tokens a request may ask for.")
    max_prompts: int = Field(256, ge=1, description="Prompts allowed in one completions call.")
    max_n: int = Field(8, ge=1, description="Largest n (and best_of) a request may ask for.")

    # Structured outputs and tools
    grammar_compile_timeout: float = Field(
        10.0, gt=0, description="Seconds a request's schema or grammar may take to compile before a 400."
    )
    max_grammar_bytes: int = Field(64 * 1024, ge=1024, description="Largest schema or grammar a request may send.")

    # Responses API
    response_ttl_days: float = Field(
        30.0, gt=0, description="Days a stored response (`store: true`) is kept for retrieval and previous_response_id.")

    # Embeddings
    embed_max_batch_size: int = Field(32, ge=1, description="Inputs per embedding forward pass.")
    embed_max_batch_tokens: int = Field(8192, ge=16, description="Tokens per embedding forward pass, counted as "
                                        "if padded to the longest input.")
    embed_max_queued: int = Field(1024, ge=0, description="Inputs waiting per embedding model before 429.")
    embed_streams: int | None = Field(None, ge=1, description="Embedding forwards run side by side, each with its "
                                      "share of the torch threads (default: one per thread on CPU, one on GPU).")
    embed_max_inputs: int = Field(2048, ge=1, description="Inputs allowed in one embeddings call.")
    rerank_max_documents: int = Field(1000, ge=1, description="Documents allowed in one rerank call (and "
                                      "`text_2` texts in one score call).")

    # Fine-tuning
    fine_tuning_concurrency: int = Field(1, ge=1, description="Fine-tuning jobs that train at the same time.")
    training_threads: int = Field(1, ge=1, description="torch threads per training worker process.")
    fine_tuning_supervisor: bool = Field(
        True, description="Run fine-tuning jobs here; off on all but one replica of a cluster (docs/scale-out.md).",
    )
    model_sync_seconds: float = Field(
        2.0, gt=0, description="How often a replica that does not supervise looks for new fine-tuned models.",
    )
    fine_tuning_max_interruptions: int = Field(
        3, ge=1, description="Fail a job, not resume it, at the n-th server crash during its training."
    )

    # Batch API
    batch_max_requests: int = Field(50_000, ge=1, description="Most request lines a batch input file may hold.")
    batch_window_hours: float = Field(
        24.0, gt=0, description="Hours a batch may run before it expires (the `24h` completion window).")
    batch_concurrency: int | None = Field(
        None, ge=1, description="Batch lines in flight at once (default: twice max_running).")
    batch_reserved_rows: int | None = Field(
        None, ge=0, description="Generation slots kept free of batch lines while interactive requests keep "
        "arriving (default: a quarter of max_running).")
    batch_cancel_grace_seconds: float = Field(
        60.0, ge=0, description="Seconds a cancelled batch's lines in flight may run on to finish into its output.")
    batch_runner: bool = Field(
        True, description="Run batches here (one replica of those with it on runs them, elected through the store).")
    batch_lease_seconds: float = Field(
        10.0, gt=0, description="How long the replica running batches holds its claim without renewing it.")

    # HTTP
    api_keys: Annotated[list[str], NoDecode] = Field(
        default_factory=list, repr=False, description="Comma-separated Bearer keys; empty means no auth."
    )
    api_keys_file: Path | None = Field(
        None, description="File of Bearer keys, one per line, each optionally followed by its model allowlist."
    )
    rate_limit_rpm: int | None = Field(None, ge=1, description="Requests per minute per API key.")
    rate_limit_tpm: int | None = Field(None, ge=1, description="Tokens per minute per API key.")
    usage_flush_seconds: float = Field(
        1.0, gt=0, le=60, description="How often the usage counted per API key is written to the store: a crash "
        "loses at most this many seconds of counts.")
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Comma-separated origins allowed by CORS; empty means CORS off."
    )
    shutdown_grace: float = Field(30.0, ge=0, description="Seconds in-flight requests get to finish on SIGTERM.")
    max_body_bytes: int = Field(2 * 1024 * 1024, ge=1024, description="Largest JSON request body.")
    max_upload_bytes: int = Field(100 * 1024 * 1024, ge=1024, description="Largest uploaded file.")
    max_concurrent_uploads: int = Field(4, ge=1, description="Uploads received at the same time (429 beyond).")
    keepalive_seconds: float = Field(15.0, gt=0, description="SSE keep-alive comment interval.")
    allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated Host names a keyless server answers besides the loopback names.",
    )
    header_timeout: float = Field(10.0, gt=0, description="Seconds a connection may take to send its request headers.")
    body_timeout: float = Field(30.0, gt=0, description="Seconds a request body may go without sending data.")
    keep_alive_timeout: float = Field(5.0, gt=0, description="Seconds an idle keep-alive connection stays open.")
    min_free_bytes: int = Field(
        64 * 1024 * 1024, ge=0, description="Free space the data directory needs; below it /ready says storage_full."
    )
    log_level: Literal["critical", "error", "warning", "info", "debug"] = Field(
        "info", validation_alias=AliasChoices("MAAS_LOG_LEVEL", "MAAS_LOG", "log_level"),
        description="Server log level; MAAS_LOG is accepted too (MAAS_LOG_LEVEL wins).",
    )
    access_log: bool = Field(True, description="Log one line per request (method, path, status, duration, id).")
    playground: bool = Field(True, description="Serve the browser playground at /playground (and / leads there).")
    replica: str | None = Field(
        None, description="This replica's name in a cluster: labels its metrics (x-maas-replica is always sent).",
    )

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("api_keys", "enabled_models", "cors_origins", "allowed_hosts", "lora_modules",
                     "engine_compile_buckets", mode="before")
    @classmethod
    def _split_csv(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("engine_compile_buckets")
    @classmethod
    def _positive_buckets(cls, value: list[int]) -> list[int]:
        if any(bucket < 1 for bucket in value):
            raise ValueError("engine_compile_buckets are batch sizes: each must be >= 1")
        return sorted(set(value))

    @field_validator("lora_modules")
    @classmethod
    def _named_paths(cls, value: list[str]) -> list[str]:
        for entry in value:
            name, sep, path = entry.partition("=")
            if not sep or not name.strip() or not path.strip():
                raise ValueError(f"lora_modules entry {entry!r} is not name=path")
        return value

    @field_validator("models")
    @classmethod
    def _models_have_paths(cls, value: list[ModelSpec]) -> list[ModelSpec]:
        for i, spec in enumerate(value):
            if spec.path is None:
                raise ValueError(f"models[{i}] ({spec.id!r}) needs a path: extra models are local folders")
        return value

    @field_validator("models", mode="before")
    @classmethod
    def _parse_models(cls, value: Any) -> Any:
        if isinstance(value, str):
            return json.loads(value) if value.strip() else []
        return value
