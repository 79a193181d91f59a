"""`/v1/fine_tuning/jobs`: training jobs, their events and checkpoints (OpenAI shapes)."""

from __future__ import annotations

from typing import Any, Dict, List, Literal, Optional

from pydantic import Field

from maas_sdk.protocol.common import RequestModel, ResponseModel

JobStatus = Literal["validating_files", "queued", "running", "succeeded", "failed", "cancelled"]
TERMINAL_STATUSES = ("succeeded", "failed", "cancelled")


class Hyperparameters(RequestModel):
    n_epochs: Optional[int] = Field(default=None, ge=1, le=100)
    learning_rate: Optional[float] = Field(default=None, gt=0.0, le=1.0)
    batch_size: Optional[int] = Field(default=None, ge=1, le=512)
    max_steps: Optional[int] = Field(default=None, ge=1, description="Stop after this many optimizer steps.")


class LoraConfig(RequestModel):
    r: int = Field(default=8, ge=1, le=256)
    alpha: int = Field(default=16, ge=1, le=1024)
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)


class FineTuneMethod(RequestModel):
    """How to train: `full` updates every weight, `lora` trains low-rank adapters (peft)."""

    type: Literal["full", "lora"]
    lora: Optional[LoraConfig] = None


class FineTuningJobCreate(RequestModel):
    model: str = Field(min_length=1)
    training_file: str = Field(min_length=1)
    validation_file: Optional[str] = None
    hyperparameters: Optional[Hyperparameters] = None
    method: Optional[FineTuneMethod] = None
    suffix: Optional[str] = Field(default=None, max_length=40, pattern=r"^[A-Za-z0-9_-]+$")
    seed: Optional[int] = Field(default=None, ge=0, le=2**31 - 1)


class FineTuningJobError(ResponseModel):
    code: Optional[str] = None
    message: str
    param: Optional[str] = None


class FineTuningJob(ResponseModel):
    id: str
    object: str = "fine_tuning.job"
    created_at: int
    finished_at: Optional[int] = None
    model: str
    fine_tuned_model: Optional[str] = None
    status: JobStatus
    training_file: str
    validation_file: Optional[str] = None
    hyperparameters: Dict[str, Any] = Field(default_factory=dict)
    method: Optional[Dict[str, Any]] = None
    suffix: Optional[str] = None
    seed: Optional[int] = None
    trained_tokens: Optional[int] = None
    result_files: List[str] = Field(default_factory=list)
    error: Optional[FineTuningJobError] = None
    estimated_finish: Optional[int] = None
    # Extensions: progress, for progress bars.
    step: Optional[int] = None
    total_steps: Optional[int] = None

    @property
    def done(self) -> bool:
        return self.status in TERMINAL_STATUSES


class FineTuningJobList(ResponseModel):
    object: str = "list"
    data: List[FineTuningJob]
    has_more: bool = False


class FineTuningEvent(ResponseModel):
    id: str
    object: str = "fine_tuning.job.event"
    created_at: int
    level: str = "info"
    message: str
    type: str = "message"
    data: Optional[Dict[str, Any]] = None


class FineTuningEventList(ResponseModel):
    object: str = "list"
    data: List[FineTuningEvent]
    has_more: bool = False


class FineTuningCheckpoint(ResponseModel):
    id: str
    object: str = "fine_tuning.job.checkpoint"
    created_at: int
    fine_tuning_job_id: str
    fine_tuned_model_checkpoint: Optional[str] = None
    step_number: int
    metrics: Dict[str, Any] = Field(default_factory=dict)


class FineTuningCheckpointList(ResponseModel):
    object: str = "list"
    data: List[FineTuningCheckpoint]
    has_more: bool = False
