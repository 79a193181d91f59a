"""Where everything lives under the data directory.

    data_dir/maas.sqlite3            files, jobs, events, checkpoints, idempotency keys
                                     (unless MAAS_DATABASE_URL names a PostgreSQL server)
    data_dir/files/file-…            uploaded bytes, exactly as sent
    data_dir/jobs/ftjob-…/           a job's worker log and its checkpoint folders
    data_dir/models/ftjob-…/         the finished model of a succeeded job (served)

Every path is built from a validated id, never from raw client input.
"""

from __future__ import annotations

from pathlib import Path

from reference_server.storage import ids

TMP_PREFIX = ".tmp-"


class DataLayout:
    def __init__(self, root: Path) -> None:
        self.root = Path(root).expanduser()
        self.db_path = self.root / "maas.sqlite3"
        self.files_dir = self.root / "files"
        self.jobs_dir = self.root / "jobs"
        self.models_dir = self.root / "models"

    def create(self) -> None:
        for folder in (self.root, self.files_dir, self.jobs_dir, self.models_dir):
            folder.mkdir(parents=True, exist_ok=True)

    def file_path(self, file_id: str) -> Path:
        if not ids.is_valid(ids.FILE, file_id):
            raise ValueError(f"not a file id: {file_id!r}")
        return self.files_dir / file_id

    def job_dir(self, job_id: str) -> Path:
        if not ids.is_valid(ids.JOB, job_id):
            raise ValueError(f"not a job id: {job_id!r}")
        return self.jobs_dir / job_id

    def checkpoint_dir(self, job_id: str, attempt: int, step: int) -> Path:
        """Named by attempt too, so a worker that outlived its server never writes into the
        folder a newer attempt of the same job is using."""
        return self.job_dir(job_id) / "checkpoints" / f"attempt-{int(attempt)}-step-{int(step)}"

    def worker_log(self, job_id: str) -> Path:
        return self.job_dir(job_id) / "worker.log"

    def model_dir(self, job_id: str) -> Path:
        if not ids.is_valid(ids.JOB, job_id):
            raise ValueError(f"not a job id: {job_id!r}")
        return self.models_dir / job_id
