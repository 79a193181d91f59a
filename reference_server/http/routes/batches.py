"""`/v1/batches` (OpenAI's Batch API): create, retrieve, list and cancel batches.

Creation checks what can be checked at once (the input file is the caller's, uploaded with
purpose `batch`, and its requests call `endpoint`; the window is `24h`; metadata within
OpenAI's bounds), so a batch that is accepted can only fail for reasons that arise later. The
work itself is the batch service's (`reference_server.batch`). Each caller sees only its own
batches; anyone else's id is a 404, the same as an unknown one.
"""

from __future__ import annotations

import time

from starlette.requests import Request
from starlette.responses import Response

from maas_sdk import protocol as p
from maas_sdk.protocol import BatchCreate, BatchList
from maas_sdk.protocol.vocabulary import BATCH_COMPLETION_WINDOW, BATCH_ENDPOINTS
from reference_server.http.errors import bad_request, not_found
from reference_server.http.ignored import mark_ignored
from reference_server.http.parsing import json_response, parse_body
from reference_server.http.routes import _query
from reference_server.http.routing import BODY_ERRORS, RouteTable, link, page_params, path_param
from reference_server.state import state_of
from reference_server.storage import BatchRecord, ids, space

table = RouteTable("batches")
_BATCH = path_param("batch_id", "batch")
_METADATA_KEYS, _METADATA_KEY_CHARS, _METADATA_VALUE_CHARS = 16, 64, 512


async def _owned_batch(request: Request) -> BatchRecord:
    batch_id = request.path_params["batch_id"]
    return await _query.owned(request, batch_id, ids.BATCH, state_of(request).storage.db.get_batch,
                              not_found(f"No such batch: {batch_id}", param="batch_id", code="batch_not_found"))


def _check_metadata(metadata: dict[str, str] | None) -> None:
    if metadata is None:
        return
    if len(metadata) > _METADATA_KEYS:
        raise bad_request(f"metadata has {len(metadata)} keys; at most {_METADATA_KEYS} are allowed.",
                          param="metadata")
    for key, value in metadata.items():
        if len(key) > _METADATA_KEY_CHARS:
            raise bad_request(f"metadata keys are at most {_METADATA_KEY_CHARS} characters.", param="metadata")
        if len(value) > _METADATA_VALUE_CHARS:
            raise bad_request(f"metadata[{key!r}] is longer than {_METADATA_VALUE_CHARS} characters.",
                              param="metadata")


@table.route("POST", "/v1/batches", "Run a file of requests in the background.", request=p.BatchCreate,
             response=p.Batch, errors=BODY_ERRORS,
             links=tuple(link(target, batch_id="$response.body#/id") for target in (
                 "GET /v1/batches/{batch_id}", "POST /v1/batches/{batch_id}/cancel")),
             example={"input_file_id": "file-abc123", "endpoint": "/v1/chat/completions", "completion_window": "24h"})
async def create_batch(request: Request) -> Response:
    body = await parse_body(request, BatchCreate)
    state = state_of(request)
    if body.endpoint not in BATCH_ENDPOINTS:
        raise bad_request(f"endpoint must be one of {', '.join(BATCH_ENDPOINTS)}, got {body.endpoint!r}.",
                          param="endpoint", code="unsupported_endpoint")
    if body.completion_window != BATCH_COMPLETION_WINDOW:
        raise bad_request(f"completion_window must be {BATCH_COMPLETION_WINDOW!r}, got {body.completion_window!r}.",
                          param="completion_window")
    _check_metadata(body.metadata)
    owner = _query.principal(request)
    record = await state.storage.owned_file(owner, body.input_file_id, param="input_file_id")
    if record.purpose != "batch":
        raise bad_request(f"The file {record.id} was uploaded with purpose {record.purpose!r}; a batch reads a "
                          "file uploaded with purpose 'batch'.", param="input_file_id", code="invalid_file_format")
    url = record.labels[0] if record.labels else None
    if url != body.endpoint:
        raise bad_request(f"The requests of file {record.id} call {url}, not {body.endpoint}.", param="endpoint",
                          code="invalid_file_format")
    now = int(time.time())
    batch = BatchRecord(
        id=ids.new_id(ids.BATCH), owner=owner, endpoint=body.endpoint, input_file_id=record.id,
        completion_window=body.completion_window, status="validating", created_at=now,
        expires_at=now + round(state.settings.batch_window_hours * 3600), metadata=body.metadata, total=record.lines,
    )
    with space.storage_errors():
        space.require_space(state.storage.layout.root, state.settings.min_free_bytes)
        await state.storage.db.create_batch(batch)
    state.batches.wake()
    return mark_ignored(json_response(batch.to_wire()), body)


@table.route("GET", "/v1/batches", "List your batches, newest first.", response=p.BatchList,
             params=page_params(100), errors=(400, 404))
async def list_batches(request: Request) -> Response:
    _query.only(request, "after", "limit")
    batches, more = await _query.page(request, state_of(request).storage.db.list_batches, _query.principal(request),
                                      what="batch of yours", default=20, maximum=100)
    data = [b.to_wire() for b in batches]
    return json_response(BatchList(data=data, first_id=data[0].id if data else None,
                                   last_id=data[-1].id if data else None, has_more=more))


@table.route("GET", "/v1/batches/{batch_id}", "Describe one of your batches.", response=p.Batch,
             params=(_BATCH,), errors=(404,))
async def retrieve_batch(request: Request) -> Response:
    return json_response((await _owned_batch(request)).to_wire())


@table.route("POST", "/v1/batches/{batch_id}/cancel", "Cancel a batch that has not ended: the lines already "
             "run stay in its output.", response=p.Batch, params=(_BATCH,), errors=(400, 404))
async def cancel_batch(request: Request) -> Response:
    state = state_of(request)
    batch = await _owned_batch(request)
    if batch.status in ("completed", "failed", "expired"):
        raise bad_request(f"The batch {batch.id} has already {batch.status}; it cannot be cancelled.",
                          param="batch_id", code="batch_not_cancellable")
    if batch.status not in ("cancelling", "cancelled"):
        await state.storage.db.update_batch(batch.id, if_status=("validating", "in_progress"), status="cancelling",
                                            cancelling_at=int(time.time()))
        state.batches.wake()
    return json_response((await _owned_batch(request)).to_wire())
