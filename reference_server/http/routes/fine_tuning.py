"""`/v1/fine_tuning/jobs` (OpenAI shape): create, list, retrieve and cancel jobs; their events
and checkpoints.

Creation checks everything that can be checked at once (the base model can be trained, the
files exist, belong to the caller and hold data of the right format) so a job that is accepted
can only fail for reasons that arise later. With an `Idempotency-Key` header, a retried
request from the same caller returns the job the first one created instead of a second job.
Jobs are listed newest first; each caller sees only its own.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from maas_sdk import protocol as p
from maas_sdk.protocol import (
    FineTuningCheckpointList,
    FineTuningEventList,
    FineTuningJobCreate,
    FineTuningJobList,
    Hyperparameters,
)
from reference_server.http.errors import bad_request, not_found
from reference_server.http.ignored import mark_ignored
from reference_server.http.middleware.ratelimit import admit_budget
from reference_server.http.parsing import json_response, parse_body, served_model
from reference_server.http.routes import _query
from reference_server.http.routing import BODY_ERRORS, Param, RouteTable, link, page_params, path_param
from reference_server.state import state_of
from reference_server.storage import FileRecord, IdempotencyKeyReused, JobRecord, ids, space
from reference_server.training import plan

table = RouteTable("fine-tuning")
_JOB = path_param("job_id", "fine-tuning job")


_MAX_IDEMPOTENCY_KEY = 255


async def _owned_job(request: Request) -> JobRecord:
    job_id = request.path_params["job_id"]
    return await _query.owned(request, job_id, ids.JOB, state_of(request).storage.db.get_job,
                              not_found(f"No such fine-tuning job: {job_id}", param="fine_tuning_job_id",
                                        code="job_not_found"))


async def _training_data(request: Request, file_id: str, param: str, kind: str) -> FileRecord:
    record = await state_of(request).storage.owned_file(_query.principal(request), file_id, param=param)
    formats = plan.data_formats(kind)
    if record.format not in formats:
        raise bad_request(f"The file {file_id} holds {record.format} data; a {kind} job learns from "
                          f"{' or '.join(formats)} data.", param=param, code="invalid_file_format")
    return record


def _base_folder(loaded: object) -> str | None:
    """The local folder the served base model was loaded from (the converted one for GGUF models)."""
    model = getattr(loaded, "model", None)
    folder = getattr(model, "name_or_path", None)
    return folder if isinstance(folder, str) and folder else None


def _idempotency_key(request: Request) -> str | None:
    key = request.headers.get("idempotency-key")
    if key is None:
        return None
    if not key or len(key) > _MAX_IDEMPOTENCY_KEY or not key.isprintable():
        raise bad_request(f"Idempotency-Key must be 1 to {_MAX_IDEMPOTENCY_KEY} printable characters.",
                          param="Idempotency-Key")
    return key


def _hyperparameters(body: FineTuningJobCreate) -> Hyperparameters | None:
    """The hyperparameters, from `method.supervised` (OpenAI's current form) or the top level
    (its older form), not both; `dpo` and `reinforcement` methods are refused."""
    method = body.method
    if method is not None and method.type in ("dpo", "reinforcement"):
        raise bad_request(f"The {method.type} method is not supported; this server trains with the supervised "
                          "method (full or LoRA).", param="method.type", code="unsupported_method")
    nested = method.supervised.hyperparameters if method is not None and method.supervised is not None else None
    if nested is not None and body.hyperparameters is not None:
        raise bad_request("Give hyperparameters in method.supervised.hyperparameters or at the top level, "
                          "not both.", param="hyperparameters")
    if method is not None and method.supervised is not None and method.type != "supervised":
        raise bad_request(f"method.supervised goes with type supervised, not {method.type}.", param="method.type")
    return nested or body.hyperparameters


def _check_rank(body: FineTuningJobCreate, method: dict[str, Any], max_rank: int) -> None:
    """A LoRA rank above what the server serves is a 400 naming the field it came from."""
    rank = method.get("lora", {}).get("r", 0) if method["type"] == "lora" else 0
    if rank > max_rank:
        nested = body.method is not None and body.method.supervised is not None and body.method.supervised.lora
        raise bad_request(f"A LoRA rank of {rank} is above this server's limit of {max_rank} "
                          "(MAAS_MAX_LORA_RANK).", param="method.supervised.lora.r" if nested else "method.lora.r",
                          code="lora_rank_too_large")


@table.route("POST", "/v1/fine_tuning/jobs", "Start a fine-tuning job.", request=p.FineTuningJobCreate,
             response=p.FineTuningJob, errors=BODY_ERRORS,
             links=tuple(link(target, job_id="$response.body#/id") for target in (
                 "GET /v1/fine_tuning/jobs/{job_id}", "POST /v1/fine_tuning/jobs/{job_id}/cancel",
                 "GET /v1/fine_tuning/jobs/{job_id}/events", "GET /v1/fine_tuning/jobs/{job_id}/checkpoints")),
             params=(Param("Idempotency-Key", "header", {"type": "string", "minLength": 1, "maxLength": 255},
             "A retry with the same key returns the job the first request created."),))
async def create_job(request: Request) -> Response:
    body = await parse_body(request, FineTuningJobCreate)
    key = _idempotency_key(request)
    state = state_of(request)
    await admit_budget(request)
    served = served_model(request, body.model)
    kind = plan.kind_for_task(served.task)
    base_path = _base_folder(served.loaded)
    if kind is None or base_path is None:
        raise bad_request(f"The model '{body.model}' cannot be fine-tuned.", param="model",
                          code="model_not_trainable")
    if served.adapter is not None:
        raise bad_request(f"The model '{body.model}' is a LoRA adapter; fine-tune its base model "
                          f"'{served.parent}' instead.", param="model", code="model_not_trainable")
    training = await _training_data(request, body.training_file, "training_file", kind)
    if kind == plan.CLASSIFIER and len(training.labels) < 2:
        raise bad_request(f"The file {training.id} has a single label; a classifier needs at least two.",
                          param="training_file", code="invalid_file_format")
    if body.validation_file is not None:
        validation = await _training_data(request, body.validation_file, "validation_file", kind)
        extra = sorted(set(validation.labels) - set(training.labels))
        if extra:
            raise bad_request(f"The validation file has labels the training file lacks: {', '.join(extra)}",
                              param="validation_file", code="invalid_file_format")

    hyperparameters, method = plan.resolve(kind, _hyperparameters(body), body.method)
    _check_rank(body, method, state.settings.max_lora_rank)
    now = int(time.time())
    job = JobRecord(
        id=ids.new_id(ids.JOB), owner=_query.principal(request), created_at=now, updated_at=now,
        model=body.model, base_path=base_path, kind=kind, status="validating_files",
        training_file=training.id, validation_file=body.validation_file, hyperparameters=hyperparameters,
        method=method, suffix=body.suffix, seed=body.seed if body.seed is not None else secrets.randbelow(2**31),
    )
    digest = hashlib.sha256(json.dumps(body.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()
    try:
        with space.storage_errors():
            space.require_space(state.storage.layout.root, state.settings.min_free_bytes)
            job, _ = await state.storage.db.create_job(job, idempotency_key=key, digest=digest)
    except IdempotencyKeyReused as exc:
        raise bad_request(f"This Idempotency-Key was already used for a different request (job {exc.job_id}).",
                          param="Idempotency-Key", code="idempotency_key_reused") from None
    state.fine_tuning.wake()
    return mark_ignored(json_response(job.to_wire()), body)


@table.route("GET", "/v1/fine_tuning/jobs", "List your fine-tuning jobs, newest first.",
             response=p.FineTuningJobList, params=page_params(100), errors=(400, 404))
async def list_jobs(request: Request) -> Response:
    _query.only(request, "after", "limit")
    jobs, more = await _query.page(request, state_of(request).storage.db.list_jobs, _query.principal(request),
                                   what="job of yours", default=20, maximum=100)
    return json_response(FineTuningJobList(data=[j.to_wire() for j in jobs], has_more=more))


@table.route("GET", "/v1/fine_tuning/jobs/{job_id}", "Describe one of your jobs.", response=p.FineTuningJob,
             params=(_JOB,), errors=(404,))
async def retrieve_job(request: Request) -> Response:
    return json_response((await _owned_job(request)).to_wire())


@table.route("POST", "/v1/fine_tuning/jobs/{job_id}/cancel", "Cancel a job that has not finished.",
             response=p.FineTuningJob, params=(_JOB,), errors=(400, 404))
async def cancel_job(request: Request) -> Response:
    job = await _owned_job(request)
    if job.status in ("succeeded", "failed"):
        raise bad_request(f"The job {job.id} has already {job.status}; it cannot be cancelled.",
                          param="fine_tuning_job_id", code="job_not_cancellable")
    if job.status != "cancelled":
        await state_of(request).fine_tuning.cancel(job.id)
    return json_response((await _owned_job(request)).to_wire())


@table.route("GET", "/v1/fine_tuning/jobs/{job_id}/events", "A job's events, newest first.",
             response=p.FineTuningEventList, params=(_JOB, *page_params(1000)), errors=(400, 404))
async def list_events(request: Request) -> Response:
    _query.only(request, "after", "limit")
    job = await _owned_job(request)
    events, more = await _query.page(request, state_of(request).storage.db.list_events, job.id,
                                     what="event of this job", default=20, maximum=1000)
    return json_response(FineTuningEventList(data=[e.to_wire() for e in events], has_more=more))


@table.route("GET", "/v1/fine_tuning/jobs/{job_id}/checkpoints", "A job's checkpoints, newest first.",
             response=p.FineTuningCheckpointList, params=(_JOB, *page_params(100)), errors=(400, 404))
async def list_checkpoints(request: Request) -> Response:
    _query.only(request, "after", "limit")
    job = await _owned_job(request)
    checkpoints, more = await _query.page(request, state_of(request).storage.db.list_checkpoints, job.id,
                                          what="checkpoint of this job", default=10, maximum=100)
    return json_response(FineTuningCheckpointList(data=[c.to_wire() for c in checkpoints], has_more=more))

