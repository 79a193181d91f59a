"""`/v1/fine_tuning/jobs`: training jobs, their events and checkpoints (OpenAI shapes)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from maas_sdk.protocol.common import RequestModel, ResponseModel
from maas_sdk.protocol.vocabulary import TERMINAL_STATUSES, JobStatus


class Hyperparameters(RequestModel):
    n_epochs: int | None = Field(default=None, ge=1, le=100)
    learning_rate: float | None = Field(default=None, gt=0.0, le=1.0)
    batch_size: int | None = Field(default=None, ge=1, le=512)
    max_steps: int | None = Field(default=None, ge=1, description="Stop after this many optimizer steps.")


class LoraConfig(RequestModel):
    r: int = Field(default=8, ge=1, le=256)
    alpha: int = Field(default=16, ge=1, le=1024)
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)


class FineTuneMethod(RequestModel):
    """How to train: `full` updates every weight, `lora` trains low-rank adapters (peft)."""

    type: Literal["full", "lora"]
    lora: LoraConfig | None = None


class FineTuningJobCreate(RequestModel):
    model: str = Field(min_length=1)
    training_file: str = Field(min_length=1)
    validation_file: str | None = None
    hyperparameters: Hyperparameters | None = None
    method: FineTuneMethod | None = None
    suffix: str | None = Field(default=None, max_length=40, pattern=r"^[A-Za-z0-9_-]+$")
    seed: int | None = Field(default=None, ge=0, le=2**31 - 1)


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


class FineTuningJobList(ResponseModel):
    object: str = "list"
    data: list[FineTuningJob]
    has_more: bool = False


class FineTuningEvent(ResponseModel):
    id: str
    object: str = "fine_tuning.job.event"
    created_at: int
    level: str = "info"
    message: str
    type: str = "message"
    data: dict[str, Any] | None = None


class FineTuningEventList(ResponseModel):
    object: str = "list"
    data: list[FineTuningEvent]
    has_more: bool = False


class FineTuningCheckpoint(ResponseModel):
    id: str
    object: str = "fine_tuning.job.checkpoint"
    created_at: int
    fine_tuning_job_id: str
    fine_tuned_model_checkpoint: str | None = None
    step_number: int
    metrics: dict[str, Any] = Field(default_factory=dict)


class FineTuningCheckpointList(ResponseModel):
    object: str = "list"
    data: list[FineTuningCheckpoint]
    has_more: bool = False
