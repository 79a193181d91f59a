"""What every command shares: the global options, the client they make, and error reporting."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer

from maas_cli._output import Output
from maas_sdk import APIStatusError, MaaS, MaaSError


@dataclass(frozen=True)
class Globals:
    """`--base-url`, `--api-key`, `--timeout`, `--json` as given before the command (None: the SDK's default)."""

    base_url: str | None = None
    api_key: str | None = None
    timeout: float | None = None
    json: bool = False


def globals_of(ctx: typer.Context) -> Globals:
    obj = ctx.find_root().obj
    return obj if isinstance(obj, Globals) else Globals()


def output(ctx: typer.Context, json_flag: bool) -> Output:
    """The command's output; `--json` counts whether given before or after the command."""
    return Output(json_flag or globals_of(ctx).json)


def client(ctx: typer.Context) -> MaaS:
    options = globals_of(ctx)
    kwargs: dict[str, Any] = {}
    if options.base_url is not None:
        kwargs["base_url"] = options.base_url
    if options.api_key is not None:
        kwargs["api_key"] = options.api_key
    if options.timeout is not None:
        kwargs["timeout"] = options.timeout
    return MaaS(**kwargs)


def default_model(api: MaaS, task: str) -> str:
    """The first served model doing `task`, for commands run without `--model`."""
    for model in api.models.list().data:
        if model.task == task:
            return model.id
    raise typer.BadParameter(f"the server has no model with task {task!r}; pass --model", param_hint="--model")


def report(error: MaaSError, json_mode: bool) -> None:
    """An SDK error as one line (or one JSON object) on stderr."""
    out = Output(json_mode)
    if isinstance(error, APIStatusError):
        out.error(error.message, status=error.status_code,
                  type=error.type, param=error.param, code=error.code)
    else:
        out.error(str(error), type=type(error).__name__)


def file_id(api: MaaS, value: str, purpose: str) -> str:
    """`value` if it names an uploaded file; a local path is uploaded first and its new id returned."""
    path = Path(value)
    if path.is_file():
        return api.files.upload(path, purpose=purpose).id
    return value
