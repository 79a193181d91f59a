"""Rows of the store as plain dataclasses, and their wire (OpenAI-shaped) form.

Rows carry more than the wire shows (owner, the base model's folder, the attempt counter),
so the two are kept apart and converted in one place.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast

from maas_sdk.protocol import (
    Batch,
    BatchError,
    BatchErrors,
    BatchRequestCounts,
    BatchUsage,
    FileObject,
    FineTuningCheckpoint,
    FineTuningEvent,
    FineTuningJob,
    FineTuningJobError,
)
from maas_sdk.protocol.vocabulary import TERMINAL_BATCH_STATUSES, TERMINAL_STATUSES, BatchStatus


@dataclass
class FileRecord:
    id: str
    owner: str
    filename: str
    purpose: str
    bytes: int
    created_at: int
    format: str
    lines: int
    sha256: str
    labels: list[str] = field(default_factory=list)  # classification labels; a batch file's url

    def to_wire(self) -> FileObject:
        return FileObject(
            id=self.id, bytes=self.bytes, created_at=self.created_at, filename=self.filename,
            purpose=self.purpose, status="processed", format=self.format, lines=self.lines,
        )


@dataclass
class ResponseRecord:
    """A stored response of the Responses API: `body` is the response object as it was sent,
    `input_items` the items its request gave, `conversation` every item up to and including its
    output (the input items of a request that continues it). All three are JSON values."""

    id: str
    owner: str
    created_at: int
    expires_at: int
    body: dict[str, Any]
    input_items: list[dict[str, Any]]
    conversation: list[dict[str, Any]]


@dataclass
class JobRecord:
    id: str
    owner: str
    created_at: int
    updated_at: int
    model: str
    base_path: str
    kind: str
    status: str
    training_file: str
    hyperparameters: dict[str, Any]
    method: dict[str, Any]
    seed: int
    validation_file: str | None = None
    suffix: str | None = None
    finished_at: int | None = None
    fine_tuned_model: str | None = None
    trained_tokens: int | None = None
    error: dict[str, Any] | None = None
    step: int = 0
    total_steps: int | None = None
    attempt: int = 0
    interruptions: int = 0
    cancel_requested: bool = False

    @property
    def done(self) -> bool:
        return self.status in TERMINAL_STATUSES

    def to_wire(self) -> FineTuningJob:
        return FineTuningJob(
            id=self.id, created_at=self.created_at, finished_at=self.finished_at, model=self.model,
            fine_tuned_model=self.fine_tuned_model, status=self.status,
            training_file=self.training_file, validation_file=self.validation_file,
            hyperparameters=self.hyperparameters, method=self.method, suffix=self.suffix, seed=self.seed,
            trained_tokens=self.trained_tokens,
            error=FineTuningJobError(**self.error) if self.error else None,
            step=self.step, total_steps=self.total_steps,
        )


@dataclass
class EventRecord:
    id: str
    job_id: str
    created_at: int
    level: str
    type: str
    message: str
    data: dict[str, Any] | None = None

    def to_wire(self) -> FineTuningEvent:
        return FineTuningEvent(id=self.id, created_at=self.created_at, level=self.level, message=self.message,
                               type=self.type, data=self.data)


@dataclass
class CheckpointRecord:
    id: str
    job_id: str
    created_at: int
    step_number: int
    path: str
    metrics: dict[str, Any] = field(default_factory=dict)

    def to_wire(self) -> FineTuningCheckpoint:
        return FineTuningCheckpoint(id=self.id, created_at=self.created_at, fine_tuning_job_id=self.job_id,
                                    step_number=self.step_number, metrics=self.metrics)


@dataclass
class BatchRecord:
    """A batch: its request, its state, and the counts and token totals of the lines recorded."""

    id: str
    owner: str
    endpoint: str
    input_file_id: str
    completion_window: str
    status: str
    created_at: int
    expires_at: int
    metadata: dict[str, str] | None = None
    errors: list[dict[str, Any]] | None = None
    output_file_id: str | None = None
    error_file_id: str | None = None
    in_progress_at: int | None = None
    finalizing_at: int | None = None
    completed_at: int | None = None
    failed_at: int | None = None
    expired_at: int | None = None
    cancelling_at: int | None = None
    cancelled_at: int | None = None
    total: int = 0
    completed: int = 0
    failed: int = 0
    input_tokens: int = 0
    output_tokens: int = 0

    @property
    def done(self) -> bool:
        return self.status in TERMINAL_BATCH_STATUSES

    def to_wire(self) -> Batch:
        tokens = self.input_tokens + self.output_tokens
        return Batch(
            id=self.id, endpoint=self.endpoint, input_file_id=self.input_file_id,
            completion_window=self.completion_window, status=cast(BatchStatus, self.status),
            errors=BatchErrors(data=[BatchError(**e) for e in self.errors]) if self.errors else None,
            output_file_id=self.output_file_id, error_file_id=self.error_file_id, created_at=self.created_at,
            in_progress_at=self.in_progress_at, expires_at=self.expires_at, finalizing_at=self.finalizing_at,
            completed_at=self.completed_at, failed_at=self.failed_at, expired_at=self.expired_at,
            cancelling_at=self.cancelling_at, cancelled_at=self.cancelled_at,
            request_counts=BatchRequestCounts(total=self.total, completed=self.completed, failed=self.failed),
            usage=BatchUsage(input_tokens=self.input_tokens, output_tokens=self.output_tokens, total_tokens=tokens),
            metadata=self.metadata,
        )


@dataclass
class UsageCounts:
    """What one API key used of one model, in one kind of use: requests, tokens read and
    written, inputs embedded or classified, tokens fine-tuning trained."""

    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    inputs: int = 0
    trained_tokens: int = 0

    @property
    def tokens(self) -> int:
        """The tokens a monthly budget counts: read, written and trained."""
        return self.prompt_tokens + self.completion_tokens + self.trained_tokens

    def add(self, other: UsageCounts) -> None:
        self.requests += other.requests
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens
        self.inputs += other.inputs
        self.trained_tokens += other.trained_tokens


@dataclass(frozen=True)
class UsageCell:
    """Where counts are added up in the store: one key, one minute (Unix seconds), one model, one kind."""

    owner: str
    minute: int
    model: str
    kind: str


@dataclass
class UsageRow:
    """Counts added up over one bucket (its start, Unix seconds), per model and kind when grouped by them."""

    bucket: int
    counts: UsageCounts
    model: str | None = None
    kind: str | None = None
