"""The training worker: one process per job attempt, started by the server's supervisor.

    python -m reference_server.training.worker --data-dir D --job ftjob-… --attempt N

Training runs in its own process so the server keeps answering while it computes, a crash or
an out-of-memory kill takes down only the job, and the torch thread count can be set for
training alone. The worker talks to the server only through the job store.

SIGTERM (or SIGINT) asks it to stop: it finishes the current step, saves a checkpoint and
exits with `EXIT_STOPPED`. It also stops by itself when its server goes away (on Linux the
kernel sends it SIGTERM; elsewhere it notices its parent changed), so no orphan keeps
training after a crash.

Its store is the server's: the PostgreSQL server named by `MAAS_DATABASE_URL` in its
environment, else the data directory's SQLite file.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
import traceback
from pathlib import Path

from reference_server.training import DATABASE_URL_ENV, EXIT_FAILED, EXIT_OK, EXIT_STOPPED, EXIT_SUPERSEDED

_PR_SET_PDEATHSIG = 1


def _signal_on_parent_death(sig: int) -> None:
    """Ask Linux to send `sig` when the parent exits (no-op elsewhere)."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def _failure_message(exc: BaseException) -> str:
    from reference_server.datasets import DatasetError
    from reference_server.training.trainer import TrainingError

    if isinstance(exc, (TrainingError, DatasetError, ValueError)):
        text = str(exc)
    else:
        text = f"unexpected {type(exc).__name__}: {exc}"
    return f"Training failed: {text}"[:1000]


def run(data_dir: Path, job_id: str, attempt: int, device: str | None, parent_pid: int) -> int:
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    _signal_on_parent_death(signal.SIGTERM)
    if parent_pid and os.getppid() != parent_pid:
        return EXIT_SUPERSEDED  # the server died before this process was set up

    from reference_server.inference.loading import resolve_device
    from reference_server.storage import DataLayout, NewEvent, Store
    from reference_server.training.trainer import StopRequested, Superseded, Trainer

    layout = DataLayout(data_dir)
    store = Store(os.environ.get(DATABASE_URL_ENV) or layout.db_path)
    try:
        job = store.get_job(job_id)
        if job is None or job.attempt != attempt or job.status != "running":
            return EXIT_SUPERSEDED
        if job.cancel_requested:
            return EXIT_STOPPED

        def should_stop() -> bool:
            return stop.is_set() or (parent_pid != 0 and os.getppid() != parent_pid)

        trainer = Trainer(store, layout, job, resolve_device(device), should_stop)
        try:
            trainer.run()
            return EXIT_OK
        except StopRequested:
            return EXIT_STOPPED
        except Superseded:
            return EXIT_SUPERSEDED
        except Exception as exc:  # noqa: BLE001 - whatever went wrong becomes the job's recorded error
            traceback.print_exc()
            message = _failure_message(exc)
            store.update_job(job_id, if_status=("running",), if_attempt=attempt, status="failed",
                             finished_at=int(time.time()),
                             error={"code": "training_failed", "message": message, "param": None},
                             events=[NewEvent(message, level="error")])
            return EXIT_FAILED
    finally:
        store.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reference_server.training.worker")
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--job", required=True)
    parser.add_argument("--attempt", type=int, required=True)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default=None)
    parser.add_argument("--parent-pid", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    import torch

    torch.set_num_threads(args.threads)
    return run(args.data_dir, args.job, args.attempt, args.device, args.parent_pid)


if __name__ == "__main__":
    sys.exit(main())
