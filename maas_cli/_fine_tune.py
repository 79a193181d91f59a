"""`maas fine-tune create|list|show|events|cancel`: training jobs, with a live progress bar."""

from __future__ import annotations

from datetime import datetime, timezone
from itertools import islice
from typing import Annotated, Any

import typer

from maas_cli._context import client, file_id, output
from maas_cli._options import JSON
from maas_cli._output import Output
from maas_cli._progress import follow
from maas_sdk import FineTuningJob, FineTuningJobFailed, MaaS

app = typer.Typer(help="Create, follow and cancel fine-tuning jobs.", no_args_is_help=True)

_COLUMNS = ["id", "model", "status", "steps", "fine_tuned_model", "created"]

JobId = Annotated[str, typer.Argument(help="A fine-tuning job id.")]


def _when(timestamp: int) -> str:
    return datetime.fromtimestamp(timestamp, tz=timezone.utc).strftime("%Y-%m-%d %H:%M")


def _row(job: FineTuningJob) -> tuple[object, ...]:
    steps = f"{job.step or 0}/{job.total_steps}" if job.total_steps else ""
    return (job.id, job.model, job.status, steps, job.fine_tuned_model, _when(job.created_at))


@app.command()
def create(
    ctx: typer.Context,
    model: Annotated[str, typer.Option("--model", "-m", help="The base model.")],
    training_file: Annotated[str, typer.Option("--training-file", help="A file id or a local JSONL file.")],
    validation_file: Annotated[str | None, typer.Option("--validation-file",
                                                        help="A file id or a local JSONL file.")] = None,
    epochs: Annotated[int | None, typer.Option("--epochs", help="n_epochs.")] = None,
    learning_rate: Annotated[float | None, typer.Option("--learning-rate")] = None,
    batch_size: Annotated[int | None, typer.Option("--batch-size")] = None,
    max_steps: Annotated[int | None, typer.Option("--max-steps", help="Stop after this many steps.")] = None,
    method: Annotated[str | None, typer.Option("--method", help="full or lora.")] = None,
    suffix: Annotated[str | None, typer.Option("--suffix", help="Part of the fine-tuned model's name.")] = None,
    seed: Annotated[int | None, typer.Option("--seed")] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Follow the job to its end with a progress bar.")] = False,
    poll_interval: Annotated[float, typer.Option("--poll-interval", help="Seconds between polls.")] = 1.0,
    json_: JSON = False,
) -> None:
    """Start a fine-tuning job (and with --wait, follow it until it ends)."""
    out = output(ctx, json_)
    hyperparameters = {key: value for key, value in {
        "n_epochs": epochs, "learning_rate": learning_rate, "batch_size": batch_size, "max_steps": max_steps,
    }.items() if value is not None}
    with client(ctx) as api:
        params: dict[str, Any] = {"suffix": suffix, "seed": seed, "hyperparameters": hyperparameters or None,
                                  "method": {"type": method} if method else None}
        if validation_file is not None:
            params["validation_file"] = file_id(api, validation_file, purpose="fine-tune")
        job: FineTuningJob = api.fine_tuning.jobs.create(
            model=model, training_file=file_id(api, training_file, purpose="fine-tune"), **params)
        if wait:
            job = _follow(api, job, out, poll_interval)
    out.data(job) if out.json else out.table(_COLUMNS, [_row(job)])


def _latest_loss(api: MaaS, job_id: str) -> float | None:
    """The newest training loss among the job's latest events (newest first)."""
    for event in islice(api.fine_tuning.jobs.events(job_id, limit=20), 20):
        if event.type == "metrics" and event.data and "train_loss" in event.data:
            return float(event.data["train_loss"])
    return None


def _follow(api: MaaS, job: FineTuningJob, out: Output, poll_interval: float) -> FineTuningJob:
    """Poll until the job ends, drawing its steps and loss."""
    def progress(job: FineTuningJob) -> dict[str, Any]:
        loss = _latest_loss(api, job.id)
        return {"completed": job.step or 0, "total": job.total_steps, "loss": "-" if loss is None else f"{loss:.4f}"}

    job = follow(job, api.fine_tuning.jobs.retrieve, progress, out, poll_interval, "loss")
    if job.status != "succeeded":
        raise FineTuningJobFailed(job)
    return job


@app.command("list")
def list_(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option("--limit", help="Most jobs to show.")] = 20,
    json_: JSON = False,
) -> None:
    """Fine-tuning jobs, newest first."""
    out = output(ctx, json_)
    with client(ctx) as api:
        jobs = list(islice(api.fine_tuning.jobs.list(limit=limit), limit))
    out.data(jobs) if out.json else out.table(_COLUMNS, [_row(job) for job in jobs])


@app.command()
def show(ctx: typer.Context, job_id: JobId, json_: JSON = False) -> None:
    """One job's state."""
    out = output(ctx, json_)
    with client(ctx) as api:
        job = api.fine_tuning.jobs.retrieve(job_id)
    out.data(job) if out.json else out.table(_COLUMNS, [_row(job)])


@app.command()
def events(
    ctx: typer.Context,
    job_id: JobId,
    limit: Annotated[int, typer.Option("--limit", help="Most events to show.")] = 50,
    json_: JSON = False,
) -> None:
    """A job's events, newest first (metrics events carry the losses)."""
    out = output(ctx, json_)
    with client(ctx) as api:
        found = list(islice(api.fine_tuning.jobs.events(job_id, limit=limit), limit))
    if out.json:
        out.data(found)
        return
    out.table(["created", "level", "type", "message"],
              [(_when(e.created_at), e.level, e.type, e.message) for e in found])


@app.command()
def cancel(ctx: typer.Context, job_id: JobId, json_: JSON = False) -> None:
    """Cancel a queued or running job."""
    out = output(ctx, json_)
    with client(ctx) as api:
        job = api.fine_tuning.jobs.cancel(job_id)
    out.data(job) if out.json else out.table(_COLUMNS, [_row(job)])
