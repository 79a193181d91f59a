"""Waiting for a fine-tuning job to finish: the decisions both clients share.

`JobWatch` judges each polled state of the job (done? failed? out of time?), says
how long to sleep before the next poll, and drives an optional tqdm progress bar
from the job's `step` / `total_steps`. The clients only poll and sleep.
"""

from __future__ import annotations

import importlib
from types import TracebackType
from typing import Any

from typing_extensions import Self

from maas_sdk._clock import Clock
from maas_sdk._exceptions import FineTuningJobFailed, WaitTimeoutError
from maas_sdk.protocol import FineTuningJob

__all__ = ["JobWatch"]


def _progress_bar(job_id: str) -> Any:
    try:
        tqdm = importlib.import_module("tqdm.auto").tqdm
    except ImportError:
        raise ImportError(
            "progress=True needs tqdm: pip install 'maas-sdk[progress]' (or pip install tqdm)"
        ) from None
    return tqdm(desc=job_id, unit="step", total=None)


class JobWatch:
    """Judges successive states of one job; a context manager that closes its progress bar."""

    def __init__(
        self, job_id: str, *, poll_interval: float, timeout: float | None, progress: bool, clock: Clock
    ) -> None:
        if poll_interval <= 0:
            raise ValueError("poll_interval must be more than 0 seconds")
        if timeout is not None and timeout < 0:
            raise ValueError("timeout must be 0 seconds or more")
        self._poll_interval = poll_interval
        self._timeout = timeout
        self._clock = clock
        self._deadline = None if timeout is None else clock.monotonic() + timeout
        self._bar = _progress_bar(job_id) if progress else None

    def finished(self, job: FineTuningJob) -> bool:
        """True once the job succeeded; raises if it failed, was cancelled, or time is up."""
        self._show(job)
        if job.status == "succeeded":
            return True
        if job.done:
            raise FineTuningJobFailed(job)
        if self._deadline is not None and self._clock.monotonic() >= self._deadline:
            raise WaitTimeoutError(job, self._timeout or 0.0)
        return False

    def delay(self) -> float:
        """Seconds to sleep before the next poll: the poll interval, or less if the deadline is nearer."""
        if self._deadline is None:
            return self._poll_interval
        return max(0.0, min(self._poll_interval, self._deadline - self._clock.monotonic()))

    def _show(self, job: FineTuningJob) -> None:
        bar = self._bar
        if bar is None:
            return
        if job.total_steps is not None and bar.total != job.total_steps:
            bar.total = job.total_steps
        if job.step is not None:
            bar.n = job.step
        bar.set_postfix_str(job.status, refresh=False)
        bar.refresh()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._bar is not None:
            self._bar.close()
