"""`maas files upload|list|show|delete`: the uploaded training and evaluation data."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated

import typer

from maas_cli._context import client, output
from maas_cli._options import JSON
from maas_sdk import FileObject

app = typer.Typer(help="Upload, list, show and delete data files.", no_args_is_help=True)

_COLUMNS = ["id", "filename", "purpose", "bytes", "format", "lines", "created"]


def _row(file: FileObject) -> tuple[object, ...]:
    created = datetime.fromtimestamp(file.created_at, tz=timezone.utc).strftime("%Y-%m-%d %H:%M")
    return (file.id, file.filename, file.purpose, file.bytes, file.format, file.lines, created)


@app.command()
def upload(
    ctx: typer.Context,
    path: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="A JSONL file.")],
    purpose: Annotated[str, typer.Option("--purpose", help="fine-tune or evals.")] = "fine-tune",
    json_: JSON = False,
) -> None:
    """Upload a JSONL file; it is validated and its format detected."""
    out = output(ctx, json_)
    with client(ctx) as api:
        file = api.files.upload(path, purpose=purpose)
    out.data(file) if out.json else out.table(_COLUMNS, [_row(file)])


@app.command("list")
def list_(
    ctx: typer.Context,
    purpose: Annotated[str | None, typer.Option("--purpose", help="Only files with this purpose.")] = None,
    json_: JSON = False,
) -> None:
    """The uploaded files, newest first."""
    out = output(ctx, json_)
    with client(ctx) as api:
        files = api.files.list(purpose=purpose)
    out.data(files) if out.json else out.table(_COLUMNS, [_row(f) for f in files.data])


@app.command()
def show(ctx: typer.Context, file_id: Annotated[str, typer.Argument(help="A file id.")], json_: JSON = False) -> None:
    """One file's details."""
    out = output(ctx, json_)
    with client(ctx) as api:
        file = api.files.retrieve(file_id)
    out.data(file) if out.json else out.table(_COLUMNS, [_row(file)])


@app.command()
def delete(ctx: typer.Context, file_id: Annotated[str, typer.Argument(help="A file id.")],
           json_: JSON = False) -> None:
    """Delete a file."""
    out = output(ctx, json_)
    with client(ctx) as api:
        deleted = api.files.delete(file_id)
    out.data(deleted) if out.json else out.line(f"deleted {deleted.id}")
