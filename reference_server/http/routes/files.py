"""`/v1/files` (OpenAI shape): upload, list, retrieve, download and delete JSONL data files.

An upload is validated before it is stored (the first bad line is reported as a 400 naming
`file`), its format is detected and recorded, and its bytes are kept exactly as sent. Each
caller sees only the files it uploaded; anyone else's id is a 404, the same as an unknown one.

Purposes: `fine-tune` (training and validation data) and `evals` (data for `/v1/evaluations`).
Both accept the same three formats; the purpose only labels the file, so a file of either
purpose can be used anywhere its format fits.
"""

from __future__ import annotations

import asyncio
import os
import time
import unicodedata

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route
from starlette.types import Message, Receive

from maas_sdk.protocol import FileDeleted, FileList
from reference_server import datasets
from reference_server.http.errors import APIError, bad_request, not_found
from reference_server.http.parsing import json_response
from reference_server.http.routes import _query
from reference_server.storage import FileRecord, blobs, ids, space
from reference_server.training.supervisor import FineTuningService

PURPOSES = ("fine-tune", "evals")
# Room for the multipart framing and the other form fields around the file itself.
_MULTIPART_OVERHEAD = 64 * 1024


def _service(request: Request) -> FineTuningService:
    service: FineTuningService = request.app.state.fine_tuning
    return service


def _clean_filename(raw: str | None) -> str:
    name = os.path.basename((raw or "").replace("\\", "/"))
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C").strip()
    return name[:255] or "upload.jsonl"


async def get_owned_file(request: Request, file_id: str) -> FileRecord:
    """The caller's file `file_id`, or 404 (also for a malformed id or someone else's file)."""
    record: FileRecord | None = None
    if ids.is_valid(ids.FILE, file_id):
        record = await _service(request).db.get_file(file_id, _query.principal(request))
    if record is None:
        raise not_found(f"No such file: {file_id}", param="file_id", code="file_not_found")
    return record


def _bounded(receive: Receive, limit: int, too_large: APIError) -> Receive:
    """`receive`, failing with `too_large` once the body passes `limit` bytes, so an upload sent
    without a Content-Length is refused as it streams in, not after it has been spooled to disk."""
    seen = 0

    async def bounded() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise too_large
        return message

    return bounded


async def upload_file(request: Request) -> Response:
    limit: int = request.app.state.settings.max_upload_bytes
    too_large = APIError(413, f"The file exceeds the upload limit of {limit} bytes.", param="file",
                         code="file_too_large")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit + _MULTIPART_OVERHEAD:
        raise too_large
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise bad_request("Upload the file as multipart/form-data with fields `file` and `purpose`.", param="file")
    uploads: asyncio.Semaphore = request.app.state.uploads
    if uploads.locked():
        raise APIError(429, "Too many uploads are being received right now; retry shortly.", code="overloaded",
                       headers={"retry-after": "1"})
    async with uploads:
        return await _receive_upload(request, limit, too_large)


async def _receive_upload(request: Request, limit: int, too_large: APIError) -> Response:
    """Parse the form (the file spools to a temporary file as it streams in), validate the file
    line by line, copy it into the store in chunks: memory stays small whatever the file's size."""
    service = _service(request)
    request = Request(request.scope, _bounded(request.receive, limit + _MULTIPART_OVERHEAD, too_large))
    async with request.form(max_files=1, max_fields=8) as form:
        upload = form.get("file")
        purpose = form.get("purpose")
        if not isinstance(upload, UploadFile):
            raise bad_request("Missing required parameter: file", param="file", code="missing_required_parameter")
        if not isinstance(purpose, str) or not purpose:
            raise bad_request("Missing required parameter: purpose", param="purpose",
                              code="missing_required_parameter")
        if purpose not in PURPOSES:
            raise bad_request(f"purpose must be one of {', '.join(PURPOSES)}, got {purpose!r}.", param="purpose")
        size = upload.size or 0  # counted by the form parser as the file spooled
        if size > limit:
            raise too_large
        try:
            info = await asyncio.to_thread(datasets.validate_file, upload.file)
        except datasets.DatasetError as exc:
            raise bad_request(f"Invalid JSONL file: {exc}", param="file", code="invalid_file") from None
        file_id = ids.new_id(ids.FILE)
        path = service.layout.file_path(file_id)
        with space.storage_errors():
            space.require_space(service.layout.files_dir, request.app.state.settings.min_free_bytes + size)
            sha256 = await asyncio.to_thread(blobs.write_stream, path, upload.file)
            record = FileRecord(id=file_id, owner=_query.principal(request), filename=_clean_filename(upload.filename),
                                purpose=purpose, bytes=size, created_at=int(time.time()), format=info.format,
                                lines=info.lines, sha256=sha256, labels=info.labels)
            try:
                await service.db.add_file(record)
            except BaseException:
                # Not recorded, so not kept: the bytes would otherwise wait for the next start-up sweep.
                await asyncio.to_thread(path.unlink, missing_ok=True)
                raise
    return json_response(record.to_wire())


async def list_files(request: Request) -> Response:
    _query.only(request, "purpose", "order", "after", "limit")
    purpose = _query.choice(request, "purpose", PURPOSES, None)
    order = _query.choice(request, "order", ("asc", "desc"), "desc")
    after = request.query_params.get("after")
    try:
        records, more = await _service(request).db.list_files(
            _query.principal(request), purpose=purpose, after=after, limit=_query.limit(request, 10000, 10000),
            newest_first=order == "desc")
    except KeyError:
        raise bad_request(f"after names no file of yours: {after}", param="after") from None
    return json_response(FileList(data=[r.to_wire() for r in records], has_more=more))


async def retrieve_file(request: Request) -> Response:
    record = await get_owned_file(request, request.path_params["file_id"])
    return json_response(record.to_wire())


async def file_content(request: Request) -> Response:
    record = await get_owned_file(request, request.path_params["file_id"])
    path = _service(request).layout.file_path(record.id)
    return FileResponse(path, media_type="application/jsonl", filename=record.filename)


async def delete_file(request: Request) -> Response:
    service = _service(request)
    record = await get_owned_file(request, request.path_params["file_id"])
    deleted = await service.db.delete_file(record.id, record.owner)
    if deleted:
        # Row first, bytes second: a crash in between leaves an unrecorded file that start-up sweeps.
        await asyncio.to_thread(service.layout.file_path(record.id).unlink, missing_ok=True)
    return json_response(FileDeleted(id=record.id, deleted=deleted))


routes = [
    Route("/v1/files", upload_file, methods=["POST"]),
    Route("/v1/files", list_files, methods=["GET"]),
    Route("/v1/files/{file_id}", retrieve_file, methods=["GET"]),
    Route("/v1/files/{file_id}/content", file_content, methods=["GET"]),
    Route("/v1/files/{file_id}", delete_file, methods=["DELETE"]),
]
