"""`/v1/files` (OpenAI shape): upload, list, retrieve, download and delete JSONL data files.

An upload is validated before it is stored (the first bad line is reported as a 400 naming
`file`), its format is detected and recorded, and its bytes are kept exactly as sent. Each
caller sees only the files it uploaded; anyone else's id is a 404, the same as an unknown one.

Purposes: `fine-tune` (training and validation data) and `evals` (data for `/v1/evaluations`).
Both accept the same three formats; the purpose only labels the file, so a file of either
purpose can be used anywhere its format fits. `batch` files hold Batch API requests (one
`{"custom_id", "method", "url", "body"}` per line, checked as they arrive: `datasets.formats`);
`batch_output` files are the results the server writes for a batch, listed and downloaded like
any other file but never uploaded.
"""

from __future__ import annotations

import asyncio
import os
import time
import unicodedata

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.types import Message, Receive

from maas_sdk import protocol as p
from maas_sdk.protocol import FileDeleted, FileList
from maas_sdk.protocol.vocabulary import BATCH_ENDPOINTS
from reference_server import datasets
from reference_server.http.errors import HTTPError, bad_request
from reference_server.http.parsing import json_response
from reference_server.http.routes import _query
from reference_server.http.routing import Param, RouteTable, link, page_params, path_param
from reference_server.state import state_of
from reference_server.storage import FileRecord, blobs, ids, space

table = RouteTable("files")
_FILE = path_param("file_id", "file")
_UPLOAD = {
    "type": "object",
    "properties": {
        "file": {"type": "string", "format": "binary", "description": "JSONL data: chat, prompt/completion "
                 "or classification records."},
        "purpose": {"type": "string", "enum": ["fine-tune", "evals", "batch"]},
    },
    "required": ["file", "purpose"],
    "additionalProperties": False,
}


PURPOSES = ("fine-tune", "evals", "batch")
# Purposes a listing may filter on: those uploaded, and the batch results the server writes.
LISTED_PURPOSES = (*PURPOSES, "batch_output")
# Room for the multipart framing and the other form fields around the file itself.
_MULTIPART_OVERHEAD = 64 * 1024


def _clean_filename(raw: str | None) -> str:
    name = os.path.basename((raw or "").replace("\\", "/"))
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C").strip()
    return name[:255] or "upload.jsonl"


async def _owned_file(request: Request) -> FileRecord:
    """The caller's file named in the path, or 404 (also for a malformed id or someone else's file)."""
    return await state_of(request).storage.owned_file(_query.principal(request), request.path_params["file_id"])


def _bounded(receive: Receive, limit: int, too_large: HTTPError) -> Receive:
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


@table.route("POST", "/v1/files", "Upload a JSONL data file.", multipart=_UPLOAD, response=p.FileObject,
             errors=(400, 413, 429, 507),
             links=tuple(link(target, file_id="$response.body#/id") for target in (
                 "GET /v1/files/{file_id}", "GET /v1/files/{file_id}/content", "DELETE /v1/files/{file_id}")))
async def upload_file(request: Request) -> Response:
    state = state_of(request)
    limit = state.settings.max_upload_bytes
    too_large = HTTPError(413, f"The file exceeds the upload limit of {limit} bytes.", param="file",
                         code="file_too_large")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit + _MULTIPART_OVERHEAD:
        raise too_large
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise bad_request("Upload the file as multipart/form-data with fields `file` and `purpose`.", param="file")
    slots = state.storage.upload_slots
    if slots.locked():
        raise HTTPError(429, "Too many uploads are being received right now; retry shortly.", code="overloaded",
                        headers={"retry-after": "1"})
    async with slots:
        return await _receive_upload(request, limit, too_large)


async def _receive_upload(request: Request, limit: int, too_large: HTTPError) -> Response:
    """Parse the form (the file spools to a temporary file as it streams in), validate the file
    line by line, copy it into the store in chunks: memory stays small whatever the file's size."""
    state = state_of(request)
    request = Request(request.scope, _bounded(request.receive, limit + _MULTIPART_OVERHEAD, too_large))
    async with request.form(max_files=1, max_fields=8) as form:
        upload = form.get("file")
        purpose = form.get("purpose")
        for name in form:
            if name not in ("file", "purpose"):  # refused, as an unknown field of a JSON body is
                raise bad_request(f"Unrecognized form field: {name!r}", param=name, code="unknown_parameter")
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
        if purpose == "batch":  # its labels: the url its requests call
            batch = await asyncio.to_thread(datasets.validate_batch_file, upload.file, BATCH_ENDPOINTS,
                                            state.settings.batch_max_requests)
            fmt, lines, labels = datasets.BATCH_FORMAT, batch.lines, [batch.url]
        else:
            info = await asyncio.to_thread(datasets.validate_file, upload.file)
            fmt, lines, labels = info.format, info.lines, info.labels
        layout = state.storage.layout
        file_id = ids.new_id(ids.FILE)
        path = layout.file_path(file_id)
        with space.storage_errors():
            space.require_space(layout.files_dir, state.settings.min_free_bytes + size)
            sha256 = await asyncio.to_thread(blobs.write_stream, path, upload.file)
            record = FileRecord(id=file_id, owner=_query.principal(request), filename=_clean_filename(upload.filename),
                                purpose=purpose, bytes=size, created_at=int(time.time()), format=fmt,
                                lines=lines, sha256=sha256, labels=labels)
            try:
                await state.storage.db.add_file(record)
            except BaseException:
                # Not recorded, so not kept: the bytes would otherwise wait for the next start-up sweep.
                await asyncio.to_thread(path.unlink, missing_ok=True)
                raise
    return json_response(record.to_wire())


@table.route("GET", "/v1/files", "List your files, newest first unless `order=asc`.", response=p.FileList,
             params=(Param("purpose", "query", {"type": "string", "enum": list(LISTED_PURPOSES)}),
             Param("order", "query", {"type": "string", "enum": ["asc", "desc"]}),
             *page_params(10000)),
             errors=(400, 404))
async def list_files(request: Request) -> Response:
    _query.only(request, "purpose", "order", "after", "limit")
    purpose = _query.choice(request, "purpose", LISTED_PURPOSES, None)
    order = _query.choice(request, "order", ("asc", "desc"), "desc")
    records, more = await _query.page(request, state_of(request).storage.db.list_files, _query.principal(request),
                                      purpose=purpose, newest_first=order == "desc", what="file of yours",
                                      default=10000, maximum=10000)
    return json_response(FileList(data=[r.to_wire() for r in records], has_more=more))


@table.route("GET", "/v1/files/{file_id}", "Describe one of your files.", response=p.FileObject,
             params=(_FILE,), errors=(404,))
async def retrieve_file(request: Request) -> Response:
    record = await _owned_file(request)
    return json_response(record.to_wire())


@table.route("GET", "/v1/files/{file_id}/content", "Download a file's bytes as uploaded.",
             raw="application/jsonl", params=(_FILE,), errors=(404,))
async def file_content(request: Request) -> Response:
    record = await _owned_file(request)
    path = state_of(request).storage.layout.file_path(record.id)
    return FileResponse(path, media_type="application/jsonl", filename=record.filename)


@table.route("DELETE", "/v1/files/{file_id}", "Delete one of your files.", response=p.FileDeleted,
             params=(_FILE,), errors=(404,))
async def delete_file(request: Request) -> Response:
    storage = state_of(request).storage
    record = await _owned_file(request)
    deleted = await storage.db.delete_file(record.id, record.owner)
    if deleted:
        # Row first, bytes second: a crash in between leaves an unrecorded file that start-up sweeps.
        await asyncio.to_thread(storage.layout.file_path(record.id).unlink, missing_ok=True)
    return json_response(FileDeleted(id=record.id, deleted=deleted))

