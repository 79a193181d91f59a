"""Background work: requests that run only on capacity interactive requests leave idle.

A batch line is submitted through the same route code as an interactive request, so the route
cannot be told its priority by an argument; the batch runner marks the task that runs the line
instead (`running_in_background()`), and the engine reads the mark when the route submits: the
generation engine admits background rows after interactive ones, the embedding batcher packs
background inputs after interactive ones.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_BACKGROUND: ContextVar[bool] = ContextVar("maas_background_work", default=False)


def is_background() -> bool:
    """Whether the current task runs background work (a batch line)."""
    return _BACKGROUND.get()


@contextmanager
def running_in_background() -> Iterator[None]:
    """Everything submitted inside the block (and in tasks it starts) is background work."""
    token = _BACKGROUND.set(True)
    try:
        yield
    finally:
        _BACKGROUND.reset(token)
