"""Log lines that name their request.

The request-id middleware sets `request_id` for the task serving a request; every log record
made in that task (the access log `reference_server.access`, errors, the routes' own lines) and in the threads it hands
work to (`contextvars` travel with `asyncio.to_thread`) carries it as `record.request_id`, and
`log_config` prints it. Work done on an engine's own thread names its request explicitly
(`RequestIdFilter` keeps a `request_id` passed in `extra=`).
"""

from __future__ import annotations

import logging
from contextvars import ContextVar
from typing import Any

request_id: ContextVar[str | None] = ContextVar("request_id", default=None)

FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"


class RequestIdFilter(logging.Filter):
    """Adds `record.request_id`: the request being served, or "-" outside any request."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "request_id", None):
            record.request_id = request_id.get() or "-"
        return True


def log_config(level: str) -> dict[str, Any]:
    """A `logging.config.dictConfig` for uvicorn and the server: one stderr stream, every line
    with its request id."""
    level = level.upper()
    handler = {"class": "logging.StreamHandler", "stream": "ext://sys.stderr", "filters": ["request_id"]}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request_id": {"()": RequestIdFilter}},
        "formatters": {"default": {"format": FORMAT}},
        "handlers": {"default": {**handler, "formatter": "default"}},
        "loggers": {
            "uvicorn": {"handlers": ["default"], "level": level, "propagate": False},
            "uvicorn.error": {"level": level},
            # The access log is the server's own (`reference_server.access`, below).
            "reference_server": {"handlers": ["default"], "level": level, "propagate": False},
        },
    }
