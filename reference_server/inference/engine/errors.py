"""Errors the engines raise to their callers, so routes can map them to HTTP answers."""

from __future__ import annotations


class QueueFullError(Exception):
    """The engine's waiting queue is at its bound; the caller should retry later (HTTP 429)."""


class EngineStoppedError(RuntimeError):
    """The engine is not running (not started yet, or stopped): no work can be accepted or finished."""


class GenerationError(RuntimeError):
    """A request failed inside the engine; `__cause__` holds the original exception."""
