"""Waiting for a fine-tuning job or a batch to finish: the decisions both clients share.

`JobWatch` judges each polled state of the job (done? failed? out of time?), says
how long to sleep before the next poll, and drives an optional tqdm progress bar
from the job's `step` / `total_steps`; `BatchWatch` does the same for a batch, its bar
counting the requests done of `request_counts.total`. The clients only poll and sleep.
"""

from __future__ import annotations

import importlib
from types import TracebackType
from typing import Any

from typing_extensions import Self

from maas_sdk._clock import Clock
from maas_sdk._exceptions import BatchFailed, FineTuningJobFailed, WaitTimeoutError
from maas_sdk.protocol import Batch, FineTuningJob

__all__ = ["BatchWatch", "JobWatch"]


def _progress_bar(job_id: str, unit: str = "step") -> Any:
    try:
        tqdm = importlib.import_module("tqdm.auto").tqdm
    except ImportError:
        raise ImportError(
            "progress=True needs tqdm: pip install 'maas-sdk[progress]' (or pip install tqdm)"
        ) from None
    return tqdm(desc=job_id, unit=unit, total=None)


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


class BatchWatch(JobWatch):
    """Judges successive states of one batch: it is finished once it ends `completed`,
    `expired` or `cancelled` (the requests that ran are in its output); `failed` raises."""

    def __init__(
        self, batch_id: str, *, poll_interval: float, timeout: float | None, progress: bool, clock: Clock
    ) -> None:
        super().__init__(batch_id, poll_interval=poll_interval, timeout=timeout, progress=False, clock=clock)
        self._bar = _progress_bar(batch_id, unit="request") if progress else None

    def batch_finished(self, batch: Batch) -> bool:
        self._show_batch(batch)
        if batch.status == "failed":
            raise BatchFailed(batch)
        if batch.done:
            return True
        if self._deadline is not None and self._clock.monotonic() >= self._deadline:
            raise WaitTimeoutError(batch, self._timeout or 0.0)
        return False

    def _show_batch(self, batch: Batch) -> None:
        bar = self._bar
        if bar is None:
            return
        counts = batch.request_counts
        if counts.total and bar.total != counts.total:
            bar.total = counts.total
        bar.n = counts.completed + counts.failed
        bar.set_postfix_str(batch.status, refresh=False)
        bar.refresh()
