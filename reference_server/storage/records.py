"""Rows of the store as plain dataclasses, and their wire (OpenAI-shaped) form.

Rows carry more than the wire shows (owner, the base model's folder, the attempt counter),
so the two are kept apart and converted in one place.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from maas_sdk.protocol import (
    FileObject,
    FineTuningCheckpoint,
    FineTuningEvent,
    FineTuningJob,
    FineTuningJobError,
)
from maas_sdk.protocol.vocabulary import TERMINAL_STATUSES


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
    labels: list[str] = field(default_factory=list)

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
