"""`/v1/files`: uploaded training and evaluation data."""

from __future__ import annotations

from maas_sdk.protocol.common import ListPage, ResponseModel


class FileObject(ResponseModel):
    id: str
    object: str = "file"
    bytes: int
    created_at: int
    filename: str
    purpose: str
    status: str | None = "processed"
    # Extension: the data format detected on upload ("chat", "prompt_completion", "classification").
    format: str | None = None
    lines: int | None = None


class FileList(ListPage[FileObject]):
    """A page of `GET /v1/files`."""


class FileDeleted(ResponseModel):
    id: str
    object: str = "file"
    deleted: bool
