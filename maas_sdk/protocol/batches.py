"""`/v1/batches`: files of requests run in the background (OpenAI's Batch API shapes), and the
lines of their input and output files."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from maas_sdk.protocol.common import CursorPage, RequestModel, ResponseModel
from maas_sdk.protocol.responses import InputTokensDetails, OutputTokensDetails, ResponseUsage
from maas_sdk.protocol.vocabulary import (
    BATCH_COMPLETION_WINDOW,
    BATCH_ENDPOINTS,
    TERMINAL_BATCH_STATUSES,
    BatchStatus,
)


class BatchCreate(RequestModel):
    IGNORED = ("output_expires_after",)

    input_file_id: str
    # Plain strings, checked by the server (its message names what it takes); the schema says what.
    endpoint: str = Field(json_schema_extra={"enum": list(BATCH_ENDPOINTS)})
    completion_window: str = Field(json_schema_extra={"const": BATCH_COMPLETION_WINDOW})
    metadata: dict[str, str] | None = Field(default=None, description="Up to 16 keys of 64 characters, "
                                            "values of 512.", json_schema_extra={
                                                "maxProperties": 16, "propertyNames": {"maxLength": 64},
                                                "additionalProperties": {"maxLength": 512}})
    output_expires_after: dict[str, Any] | None = Field(default=None, description="Accepted and ignored.")


class BatchRequestCounts(ResponseModel):
    total: int = 0
    completed: int = 0
    failed: int = 0


BatchInputTokensDetails = InputTokensDetails
BatchOutputTokensDetails = OutputTokensDetails


class BatchUsage(ResponseUsage):
    """The tokens of a batch's requests together, in the Responses API's usage shape (as OpenAI's
    batch object has it)."""


class BatchError(ResponseModel):
    code: str | None = None
    message: str | None = None
    param: str | None = None
    line: int | None = None


class BatchErrors(ResponseModel):
    object: str = "list"
    data: list[BatchError] = Field(default_factory=list)


class Batch(ResponseModel):
    id: str
    object: Literal["batch"] = "batch"
    endpoint: str
    errors: BatchErrors | None = None
    input_file_id: str
    completion_window: str
    status: BatchStatus
    output_file_id: str | None = None
    error_file_id: str | None = None
    created_at: int
    in_progress_at: int | None = None
    expires_at: int | None = None
    finalizing_at: int | None = None
    completed_at: int | None = None
    failed_at: int | None = None
    expired_at: int | None = None
    cancelling_at: int | None = None
    cancelled_at: int | None = None
    request_counts: BatchRequestCounts = Field(default_factory=BatchRequestCounts)
    usage: BatchUsage | None = None
    metadata: dict[str, str] | None = None

    @property
    def done(self) -> bool:
        """Whether the batch has ended (completed, failed, expired or cancelled)."""
        return self.status in TERMINAL_BATCH_STATUSES


class BatchList(CursorPage[Batch]):
    """A page of `GET /v1/batches`."""


class BatchRequest(ResponseModel):
    """One line of a batch input file."""

    custom_id: str
    method: Literal["POST"] = "POST"
    url: str
    body: dict[str, Any]


class BatchLineResponse(BaseModel):
    """The answer a line got. Not a `ResponseModel`: its `request_id` is a field of the line
    (the id the request was answered under), not the id of the call that fetched it."""

    model_config = ConfigDict(extra="allow")

    status_code: int
    request_id: str
    body: dict[str, Any]


class BatchLineError(ResponseModel):
    code: str | None = None
    message: str | None = None


class BatchResult(ResponseModel):
    """One line of a batch's output or error file: the answer the request got (`response`),
    or why it never ran (`error`: the batch expired or was cancelled first)."""

    id: str
    custom_id: str
    response: BatchLineResponse | None = None
    error: BatchLineError | None = None

    @property
    def ok(self) -> bool:
        return self.response is not None and self.response.status_code == 200
