"""A full data directory, for real: the server's data directory is a 4 MiB tmpfs with its files
folder on a second, 32 MiB one, filled from outside as another program would fill a disk.
Uploads and job creation answer 507 with a clear message, `/ready` and `/metrics` report it,
an upload whose database row could not be written leaves no bytes behind, and all recovers
once space is freed. Mounting needs root (as in the project's CI container)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest

from reference_server.testing import ServerProcess
from tests.constants import EMBEDDER

pytestmark = pytest.mark.slow

MIB = 1024 * 1024
MIN_FREE = MIB


def mount_tmpfs(path: Path, size: str) -> None:
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          check=False, capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"mounting a tmpfs needs root: {done.stderr.strip()}")


@pytest.fixture(scope="module")
def cramped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimpleNamespace]:
    workdir = tmp_path_factory.mktemp("cramped")
    data = workdir / "data"
    mount_tmpfs(data, "4m")
    try:
        mount_tmpfs(data / "files", "32m")
        try:
            env = {"MAAS_API_KEYS": "", "MAAS_ENABLED_MODELS": EMBEDDER, "MAAS_DATA_DIR": str(data),
                   "MAAS_MIN_FREE_BYTES": str(MIN_FREE), "MAAS_THREADS": "1"}
            with ServerProcess(env=env, log_path=workdir / "server.log") as proc:
                yield SimpleNamespace(server=proc, data=data, files=data / "files")
        finally:
            subprocess.run(["umount", str(data / "files")], check=False)
    finally:
        subprocess.run(["umount", str(data)], check=False)


def free(folder: Path) -> int:
    stats = os.statvfs(folder)
    return stats.f_bavail * stats.f_frsize


@contextlib.contextmanager
def filled(folder: Path, leave: int) -> Iterator[None]:
    """Fill `folder`'s file system until about `leave` bytes are free (0: to the last byte)."""
    filler = folder / "filler.bin"
    with contextlib.suppress(OSError), open(filler, "wb", buffering=0) as handle:
        while free(folder) > leave + 65536:
            handle.write(b"\0" * 65536)
        while not leave:
            handle.write(b"\0" * 4096)
    try:
        yield
    finally:
        filler.unlink()


def upload(cramped: SimpleNamespace, size: int) -> httpx.Response:
    lines = [json.dumps({"text": "a calm sentence " * 4, "label": label}) + "\n" for label in ("good", "bad")]
    body = "".join(lines) * max(1, size // len("".join(lines)))
    return httpx.post(f"{cramped.server.base_url}/files", files={"file": ("d.jsonl", body.encode())},
                      data={"purpose": "fine-tune"}, timeout=60)


def storage_full_metric(cramped: SimpleNamespace) -> float:
    text = httpx.get(f"{cramped.server.url}/metrics", timeout=30).text
    found = re.search(r"^maas_storage_full (\S+)$", text, re.MULTILINE)
    assert found, "maas_storage_full is exported"
    return float(found.group(1))


def stored_blobs(cramped: SimpleNamespace) -> list[str]:
    return sorted(p.name for p in cramped.files.iterdir() if p.name.startswith(("file-", ".tmp-")))


def assert_507(reply: httpx.Response) -> None:
    assert reply.status_code == 507, reply.text
    error = reply.json()["error"]
    assert error["code"] == "storage_full"
    assert "full" in error["message"]


def test_a_roomy_disk_is_ready(cramped: SimpleNamespace) -> None:
    assert httpx.get(f"{cramped.server.url}/ready", timeout=30).status_code == 200
    assert storage_full_metric(cramped) == 0
    assert upload(cramped, 64 * 1024).status_code == 200


def test_a_full_files_folder_refuses_uploads_with_507_and_is_reported(cramped: SimpleNamespace) -> None:
    before = stored_blobs(cramped)
    with filled(cramped.files, leave=MIB // 2):
        assert_507(upload(cramped, 2 * MIB))
        assert stored_blobs(cramped) == before, "nothing half-written is left"
        ready = httpx.get(f"{cramped.server.url}/ready", timeout=30)
        assert ready.status_code == 503
        assert ready.json()["error"]["code"] == "storage_full"
        assert storage_full_metric(cramped) == 1
    assert httpx.get(f"{cramped.server.url}/ready", timeout=30).status_code == 200
    assert storage_full_metric(cramped) == 0
    assert upload(cramped, 64 * 1024).status_code == 200, "uploads work again once space is freed"


def test_a_full_database_disk_is_507_and_leaves_no_blob(cramped: SimpleNamespace) -> None:
    training = upload(cramped, 16 * 1024).json()["id"]
    second = upload(cramped, 16 * 1024).json()["id"]
    before = stored_blobs(cramped)
    with filled(cramped.data, leave=0):
        # The files folder has room, so the bytes are written; the database row cannot be.
        assert_507(upload(cramped, 256 * 1024))
        assert stored_blobs(cramped) == before, "the blob of an upload that was not recorded is deleted"
        job = httpx.post(f"{cramped.server.base_url}/fine_tuning/jobs", timeout=60,
                         json={"model": EMBEDDER, "training_file": training, "validation_file": second})
        assert_507(job)
        assert httpx.get(f"{cramped.server.url}/ready", timeout=30).json()["error"]["code"] == "storage_full"
    assert httpx.get(f"{cramped.server.url}/ready", timeout=30).status_code == 200
