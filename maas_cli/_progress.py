"""Following an object that works for a while (a batch, a fine-tuning job) until it ends, with a
live progress bar on stderr, so that stdout stays for results."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from maas_cli._output import Output


class Followed(Protocol):
    @property
    def id(self) -> str: ...

    @property
    def status(self) -> str: ...

    @property
    def done(self) -> bool: ...


F = TypeVar("F", bound=Followed)


def follow(item: F, retrieve: Callable[[str], F], progress: Callable[[F], dict[str, Any]], out: Output,
           poll_interval: float, *fields: str) -> F:
    """Poll `retrieve` until `item` is done and return it as it ended. `progress(item)` gives the
    bar's `completed` and `total`, and a value for each of `fields`, drawn after the count."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               *(TextColumn(f"{name} {{task.fields[{name}]}}") for name in fields), TimeElapsedColumn())
    blank: dict[str, Any] = dict.fromkeys(fields, "-")
    with Progress(*columns, console=out.errors, disable=out.json) as bar:
        task = bar.add_task(item.id, total=None, **blank)
        while not item.done:
            time.sleep(poll_interval)
            item = retrieve(item.id)
            bar.update(task, description=f"{item.id} {item.status}", **progress(item))
    return item
