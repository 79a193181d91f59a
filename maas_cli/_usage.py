"""`maas usage`: what the API key used, per day (or hour, or minute), per model and kind of use."""

from __future__ import annotations

import re
import time
from datetime import datetime, timezone
from typing import Annotated, Literal, TypeVar

import typer

from maas_cli._context import client, output
from maas_cli._options import JSON
from maas_sdk import UsageBucket, UsageResult

T = TypeVar("T", bound=str)
Width = Literal["1d", "1h", "1m"]
WIDTHS: tuple[Width, ...] = ("1d", "1h", "1m")
GROUPS: tuple[Literal["model", "kind"], ...] = ("model", "kind")

_AGO = re.compile(r"^(\d+)([mhd])$")
_UNIT = {"m": 60, "h": 3600, "d": 86400}
_STAMP = {"1d": "%Y-%m-%d", "1h": "%Y-%m-%d %H:00", "1m": "%Y-%m-%d %H:%M"}
_MOST: dict[Width, int] = {"1d": 31, "1h": 168, "1m": 1440}  # buckets per page


def _choice(value: str, allowed: tuple[T, ...], param: str) -> T:
    for choice in allowed:
        if value == choice:
            return choice
    raise typer.BadParameter(f"{value!r} is not one of {', '.join(allowed)}", param_hint=param)


def _moment(value: str, param: str) -> int:
    """Unix seconds from `7d` / `12h` / `30m` (that long ago), an ISO date or time (UTC unless it
    says otherwise), or Unix seconds."""
    ago = _AGO.match(value)
    if ago:
        return int(time.time()) - int(ago.group(1)) * _UNIT[ago.group(2)]
    if value.isdigit():
        return int(value)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is neither a duration (7d, 12h, 30m), an ISO date nor Unix seconds",
                                 param_hint=param) from None
    return int((moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).timestamp())


def usage(
    ctx: typer.Context,
    since: Annotated[str, typer.Option("--since", help="From: 7d, 12h, 30m ago, an ISO date, or Unix seconds.")] = "7d",
    until: Annotated[str | None, typer.Option("--until", help="Up to (default: now); as --since.")] = None,
    bucket: Annotated[str, typer.Option("--bucket", help="Bucket width: 1d, 1h or 1m.")] = "1d",
    by: Annotated[list[str] | None, typer.Option(
        "--by", help="One row per model and/or kind of use (repeat the option); default: model.")] = None,
    model: Annotated[list[str] | None, typer.Option("--model", "-m", help="Only this model (repeatable).")] = None,
    json_: JSON = False,
) -> None:
    """What this API key used, per time bucket (GET /usage)."""
    out = output(ctx, json_)
    width = _choice(bucket, WIDTHS, "--bucket")
    groups = [_choice(group, GROUPS, "--by") for group in by or ["model"]]
    start, end = _moment(since, "--since"), _moment(until, "--until") if until is not None else None
    buckets: list[UsageBucket[UsageResult]] = []
    page: str | None = None
    with client(ctx) as api:
        while True:
            found = api.usage(start_time=start, end_time=end, bucket_width=width, group_by=groups, models=model,
                              page=page, limit=_MOST[width])
            buckets += found.data
            if not found.has_more:
                break
            page = found.next_page
    if out.json:
        out.data({"object": "list", "data": buckets})
        return
    rows = [(datetime.fromtimestamp(b.start_time, timezone.utc).strftime(_STAMP[width]), r.model, r.kind,
             r.requests, r.prompt_tokens, r.completion_tokens, r.inputs, r.trained_tokens, r.total_tokens)
            for b in buckets for r in b.results]
    out.table(["bucket (UTC)", "model", "kind", "requests", "prompt", "completion", "inputs", "trained", "tokens"],
              rows)
    if not rows:
        out.line("No use in this period.")
