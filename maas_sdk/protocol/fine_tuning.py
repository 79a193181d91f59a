"""`/v1/fine_tuning/jobs`: training jobs, their events and checkpoints (OpenAI shapes)."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from maas_sdk.protocol.common import ListPage, RequestModel, ResponseModel, server_limit
from maas_sdk.protocol.vocabulary import TERMINAL_STATUSES, JobStatus


def _or_auto(schema: dict[str, Any]) -> dict[str, Any]:
    """A field's JSON Schema that takes `"auto"` as well."""
    return {"anyOf": [schema, {"const": "auto"}]}


class Hyperparameters(RequestModel):
    """Training hyperparameters; `"auto"` (OpenAI's word for the default) and null mean the default."""

    n_epochs: int | None = Field(default=None, ge=1, le=100,
                                 json_schema_extra=_or_auto({"type": "integer", "minimum": 1, "maximum": 100}))
    learning_rate: float | None = Field(
        default=None, gt=0.0, le=1.0,
        json_schema_extra=_or_auto({"type": "number", "exclusiveMinimum": 0, "maximum": 1}))
    learning_rate_multiplier: float | None = Field(
        default=None, gt=0.0, le=100.0, description="Scales the default learning rate (OpenAI's form).",
        json_schema_extra=_or_auto({"type": "number", "exclusiveMinimum": 0, "maximum": 100}))
    batch_size: int | None = Field(default=None, ge=1, le=512,
                                   json_schema_extra=_or_auto({"type": "integer", "minimum": 1, "maximum": 512}))
    max_steps: int | None = Field(default=None, ge=1, description="Stop after this many optimizer steps.",
                                  json_schema_extra=_or_auto({"type": "integer", "minimum": 1}))

    @model_validator(mode="before")
    @classmethod
    def _auto_means_default(cls, data: Any) -> Any:
        if isinstance(data, dict) and "auto" in data.values():
            return {k: v for k, v in data.items() if v != "auto"}
        return data


class LoraConfig(RequestModel):
    r: int = Field(default=8, ge=1, le=256, json_schema_extra=server_limit(maximum="max_lora_rank"))
    alpha: int = Field(default=16, ge=1, le=1024)
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)


class SupervisedMethod(RequestModel):
    """OpenAI's `method.supervised`. `training` is ours: `full` updates every weight, `lora`
    trains low-rank adapters (peft); the default depends on the model (LoRA for generators)."""

    hyperparameters: Hyperparameters | None = None
    training: Literal["full", "lora"] | None = Field(default=None, description="full or lora (maas).")
    lora: LoraConfig | None = Field(default=None, description="LoRA settings, with training=lora (maas).")


class FineTuneMethod(RequestModel):
    """How to train. OpenAI's form is `{"type": "supervised", "supervised": {...}}`; the short
    forms `{"type": "full"}` and `{"type": "lora", "lora": {...}}` are ours. `dpo` and
    `reinforcement` are understood but refused: this server trains supervised only."""

    SCHEMA_RULES: ClassVar[dict[str, Any]] = {
        "if": {"properties": {"supervised": {"type": "object"}}, "required": ["supervised"]},
        "then": {"properties": {"type": {"const": "supervised"}}},
    }

    # The refused types are named here for their error message, not offered in the schema.
    type: Literal["supervised", "full", "lora", "dpo", "reinforcement"] = Field(
        json_schema_extra={"enum": ["supervised", "full", "lora"]})
    supervised: SupervisedMethod | None = None
    dpo: dict[str, Any] | None = None
    reinforcement: dict[str, Any] | None = None
    lora: LoraConfig | None = None

    @property
    def training(self) -> Literal["full", "lora"] | None:
        """full or lora, whichever form chose it (None: the model's default)."""
        if self.type in ("full", "lora"):
            return self.type
        return self.supervised.training if self.supervised is not None else None

    @property
    def lora_config(self) -> LoraConfig | None:
        if self.supervised is not None and self.supervised.lora is not None:
            return self.supervised.lora
        return self.lora


class FineTuningJobCreate(RequestModel):
    IGNORED = ("integrations", "metadata")
    # Hyperparameters at the top level (OpenAI's older form) or in method.supervised, not both.
    SCHEMA_RULES: ClassVar[dict[str, Any]] = {"not": {
        "properties": {"hyperparameters": {"type": "object"}, "method": {
            "properties": {"supervised": {
                "properties": {"hyperparameters": {"type": "object"}}, "required": ["hyperparameters"]}},
            "required": ["supervised"]}},
        "required": ["hyperparameters", "method"],
    }}

    model: str = Field(min_length=1)
    training_file: str = Field(min_length=1)
    validation_file: str | None = None
    hyperparameters: Hyperparameters | None = None
    method: FineTuneMethod | None = None
    suffix: str | None = Field(default=None, max_length=40, pattern=r"^[A-Za-z0-9_-]+$")
    seed: int | None = Field(default=None, ge=0, le=2**31 - 1)
    integrations: list[dict[str, Any]] | None = Field(default=None, description="Accepted and ignored.")
    metadata: dict[str, str] | None = Field(default=None, description="Accepted and ignored.")


class FineTuningJobError(ResponseModel):
    code: str | None = None
    message: str
    param: str | None = None


class FineTuningJob(ResponseModel):
    id: str
    object: str = "fine_tuning.job"
    created_at: int
    finished_at: int | None = None
    model: str
    fine_tuned_model: str | None = None
    status: JobStatus
    training_file: str
    validation_file: str | None = None
    hyperparameters: dict[str, Any] = Field(default_factory=dict)
    method: dict[str, Any] | None = None
    suffix: str | None = None
    seed: int | None = None
    trained_tokens: int | None = None
    result_files: list[str] = Field(default_factory=list)
    error: FineTuningJobError | None = None
    estimated_finish: int | None = None
    # Extensions: progress, for progress bars.
    step: int | None = None
    total_steps: int | None = None

    @property
    def done(self) -> bool:
        return self.status in TERMINAL_STATUSES


class FineTuningJobList(ListPage[FineTuningJob]):
    """A page of `GET /v1/fine_tuning/jobs`."""


class FineTuningEvent(ResponseModel):
    id: str
    object: str = "fine_tuning.job.event"
    created_at: int
    level: str = "info"
    message: str
    type: str = "message"
    data: dict[str, Any] | None = None


class FineTuningEventList(ListPage[FineTuningEvent]):
    """A page of a job's events."""


class FineTuningCheckpoint(ResponseModel):
    id: str
    object: str = "fine_tuning.job.checkpoint"
    created_at: int
    fine_tuning_job_id: str
    fine_tuned_model_checkpoint: str | None = None
    step_number: int
    metrics: dict[str, Any] = Field(default_factory=dict)


class FineTuningCheckpointList(ListPage[FineTuningCheckpoint]):
    """A page of a job's checkpoints."""
