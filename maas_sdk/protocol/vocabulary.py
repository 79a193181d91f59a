"""The words both sides share, defined once: error types, job statuses, task names, the default
model ids and the Retry-After values the server sends. The server, the SDK, the tests and the
benchmarks import them from here."""

from __future__ import annotations

from typing import Final, Literal

# Error `type` by HTTP status, as OpenAI names them; the SDK maps a type back to its status for
# errors that arrive without one (inside a stream).
ERROR_TYPES: Final[dict[int, str]] = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    409: "conflict_error",
    413: "request_too_large",
    415: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    500: "server_error",
    503: "overloaded_error",
}
SERVER_ERROR: Final = "server_error"
INVALID_REQUEST_ERROR: Final = "invalid_request_error"
# The same, as Anthropic names them (the Messages routes); another 4xx is an
# `invalid_request_error`, another 5xx an `api_error`.
ANTHROPIC_ERROR_TYPES: Final[dict[int, str]] = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    408: "timeout_error",
    409: "conflict_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    503: "overloaded_error",
    504: "timeout_error",
    529: "overloaded_error",
}

JobStatus = Literal["validating_files", "queued", "running", "succeeded", "failed", "cancelled"]
JOB_STATUSES: Final[tuple[JobStatus, ...]] = (
    "validating_files", "queued", "running", "succeeded", "failed", "cancelled")
TERMINAL_STATUSES: Final[tuple[JobStatus, ...]] = ("succeeded", "failed", "cancelled")

BatchStatus = Literal["validating", "failed", "in_progress", "finalizing", "completed", "expired", "cancelling",
                      "cancelled"]
BATCH_STATUSES: Final[tuple[BatchStatus, ...]] = (
    "validating", "failed", "in_progress", "finalizing", "completed", "expired", "cancelling", "cancelled")
TERMINAL_BATCH_STATUSES: Final[tuple[BatchStatus, ...]] = ("completed", "failed", "expired", "cancelled")
# The routes a batch line may call (OpenAI's names).
BATCH_ENDPOINTS: Final[tuple[str, ...]] = ("/v1/chat/completions", "/v1/completions", "/v1/embeddings",
                                           "/v1/responses")
BATCH_COMPLETION_WINDOW: Final = "24h"

Task = Literal["generate", "embed", "classify"]
TASKS: Final[tuple[Task, ...]] = ("generate", "embed", "classify")

DEFAULT_GENERATOR: Final = "smollm2-135m-instruct"
DEFAULT_EMBEDDER: Final = "all-minilm-l6-v2"

# Seconds in the `Retry-After` of each refusal a retry can overcome.
RETRY_AFTER_OVERLOADED: Final = 1
RETRY_AFTER_LOADING: Final = 2
RETRY_AFTER_DRAINING: Final = 5
RETRY_AFTER_STOPPING: Final = 5
RETRY_AFTER_LOAD_FAILED: Final = 30

# What a use of the API is counted as, per API key, model and minute (`GET /v1/usage`): generation
# (completions, chat, and the APIs served by the same engines), embeddings, classifications,
# reranking, and the tokens fine-tuning jobs trained.
UsageKind = Literal["completions", "embeddings", "classifications", "rerank", "fine_tuning"]
USAGE_KINDS: Final[tuple[UsageKind, ...]] = ("completions", "embeddings", "classifications", "rerank", "fine_tuning")
# The widths of usage buckets, in seconds, by the names OpenAI's Usage API gives them.
BUCKET_WIDTHS: Final[dict[str, int]] = {"1m": 60, "1h": 3600, "1d": 86400}
# The error code of a 429 given to a key past its monthly token budget: not retried before it renews.
QUOTA_EXCEEDED: Final = "quota_exceeded"
