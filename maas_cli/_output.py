"""Where the commands write: rich tables and text for people, JSON for scripts.

Colour follows rich's rules: none when stdout is not a terminal, none when `NO_COLOR`
is set. Errors go to stderr, as one line (or one JSON object with `--json`).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable, Sequence
from typing import Any, Literal

from pydantic import BaseModel
from rich.console import Console
from rich.table import Table

from maas_sdk import BasePage


def plain(value: Any) -> Any:
    """`value` as JSON-ready data (pydantic models and pages dumped, tuples as lists)."""
    if isinstance(value, (BaseModel, BasePage)):
        return value.model_dump(mode="json", exclude_none=True)
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    return value


class Output:
    """One command's output: `json` decides between machine and human form."""

    def __init__(self, json_mode: bool) -> None:
        self.json = json_mode
        # NO_COLOR (no-color.org) turns every terminal style off, bold included.
        styles: Literal["auto"] | None = None if os.environ.get("NO_COLOR") else "auto"
        self.console = Console(highlight=False, soft_wrap=True, color_system=styles)
        if not self.console.is_terminal:
            # A pipe or a file has no width: never cut an id to fit 80 columns.
            self.console.width = 1000
        self.errors = Console(stderr=True, highlight=False, soft_wrap=True, color_system=styles)

    def data(self, value: Any) -> None:
        """Print `value` as one JSON document (used in `--json` mode)."""
        sys.stdout.write(json.dumps(plain(value), ensure_ascii=False) + "\n")
        sys.stdout.flush()

    def table(self, columns: Sequence[str], rows: Iterable[Sequence[Any]], title: str | None = None) -> None:
        table = Table(title=title, header_style="bold", box=None, pad_edge=False)
        for column in columns:
            table.add_column(column, overflow="fold")
        for row in rows:
            table.add_row(*("" if cell is None else str(cell) for cell in row))
        self.console.print(table)

    def line(self, text: str = "", style: str | None = None) -> None:
        self.console.print(text, style=style, markup=False)

    def token(self, text: str) -> None:
        """Part of a streamed answer: written as it comes, with no newline."""
        self.console.print(text, end="", markup=False, highlight=False)
        self.console.file.flush()

    def error(self, message: str, **fields: Any) -> None:
        if self.json:
            sys.stderr.write(json.dumps({"error": {"message": message, **fields}}) + "\n")
        else:
            self.errors.print(f"error: {message}", style="red", markup=False)
