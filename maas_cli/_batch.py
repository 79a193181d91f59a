"""`maas batch create|list|show|cancel|results`: files of requests run in the background, with a
live progress bar."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from itertools import islice
from pathlib import Path
from typing import Annotated, Any

import typer

from maas_cli._context import client, file_id, output
from maas_cli._options import JSON
from maas_cli._output import Output
from maas_cli._progress import follow
from maas_sdk import Batch, BatchFailed, MaaS

app = typer.Typer(help="Run files of requests in the background (the Batch API).", no_args_is_help=True)

_COLUMNS = ["id", "endpoint", "status", "done", "failed", "created"]

BatchId = Annotated[str, typer.Argument(help="A batch id.")]


def _row(batch: Batch) -> tuple[object, ...]:
    counts = batch.request_counts
    created = datetime.fromtimestamp(batch.created_at, tz=timezone.utc).strftime("%Y-%m-%d %H:%M")
    return (batch.id, batch.endpoint, batch.status, f"{counts.completed + counts.failed}/{counts.total}",
            counts.failed, created)


def _metadata(pairs: list[str] | None) -> dict[str, str] | None:
    if not pairs:
        return None
    found: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"expected KEY=VALUE, got {pair!r}", param_hint="--metadata")
        found[key] = value
    return found


@app.command()
def create(
    ctx: typer.Context,
    file: Annotated[str, typer.Argument(help="A local JSONL file of requests (uploaded first) or a file id.")],
    endpoint: Annotated[str, typer.Option("--endpoint", "-e", help="The url the requests call, such as "
                                          "/v1/chat/completions.")],
    metadata: Annotated[list[str] | None, typer.Option("--metadata", help="KEY=VALUE (repeatable).")] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Follow the batch to its end with a progress bar.")] = False,
    poll_interval: Annotated[float, typer.Option("--poll-interval", help="Seconds between polls.")] = 1.0,
    json_: JSON = False,
) -> None:
    """Start a batch (and with --wait, follow it until it ends)."""
    out = output(ctx, json_)
    with client(ctx) as api:
        batch: Batch = api.batches.create(input_file_id=file_id(api, file, purpose="batch"), endpoint=endpoint,
                                          metadata=_metadata(metadata))
        if wait:
            batch = _follow(api, batch, out, poll_interval)
    out.data(batch) if out.json else out.table(_COLUMNS, [_row(batch)])


def _follow(api: MaaS, batch: Batch, out: Output, poll_interval: float) -> Batch:
    """Poll until the batch ends, drawing the requests done."""
    def progress(batch: Batch) -> dict[str, Any]:
        counts = batch.request_counts
        return {"completed": counts.completed + counts.failed, "total": counts.total or None}

    batch = follow(batch, api.batches.retrieve, progress, out, poll_interval)
    if batch.status == "failed":
        raise BatchFailed(batch)
    return batch


@app.command("list")
def list_(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option("--limit", help="Most batches to show.")] = 20,
    json_: JSON = False,
) -> None:
    """Batches, newest first."""
    out = output(ctx, json_)
    with client(ctx) as api:
        batches = list(islice(api.batches.list(limit=limit), limit))
    out.data(batches) if out.json else out.table(_COLUMNS, [_row(batch) for batch in batches])


@app.command()
def show(ctx: typer.Context, batch_id: BatchId, json_: JSON = False) -> None:
    """One batch's state."""
    out = output(ctx, json_)
    with client(ctx) as api:
        batch = api.batches.retrieve(batch_id)
    out.data(batch) if out.json else out.table(_COLUMNS, [_row(batch)])


@app.command()
def cancel(ctx: typer.Context, batch_id: BatchId, json_: JSON = False) -> None:
    """Cancel a batch; the requests that already ran stay in its output."""
    out = output(ctx, json_)
    with client(ctx) as api:
        batch = api.batches.cancel(batch_id)
    out.data(batch) if out.json else out.table(_COLUMNS, [_row(batch)])


@app.command()
def results(
    ctx: typer.Context,
    batch_id: BatchId,
    out_path: Annotated[Path | None, typer.Option("--output", "-o", help="Write the JSONL here, not to stdout.")]
    = None,
) -> None:
    """A batch's results as JSONL, one line per request in the order of its input file (the
    answers that failed too: their `response.status_code` says so)."""
    with client(ctx) as api:
        found = api.batches.results(batch_id)
    text = "".join(json.dumps(r.model_dump(mode="json"), ensure_ascii=False) + "\n" for r in found)
    if out_path is not None:
        out_path.write_text(text, encoding="utf-8")
    else:
        typer.echo(text, nl=False)
