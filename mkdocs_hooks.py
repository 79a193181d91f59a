"""mkdocs hook: the reference tables of the docs site, generated from the code they describe.

A page holds a marker such as `<!-- generated: settings -->`; the build replaces it with a
table read from the running code (the `Settings` fields, the OpenAPI document's operations,
the Prometheus registry), so the site cannot disagree with the server it documents.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

MARKER = re.compile(r"<!-- generated: (\w+) -->")


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _table(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(_cell(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _type_name(annotation: Any) -> str:
    """`int or None` rather than `int | None`: a `|` cannot stand in a Markdown table's code span."""
    if isinstance(annotation, type):
        return annotation.__name__
    text = str(annotation).replace("typing.", "").replace("pathlib.", "").replace("reference_server.settings.", "")
    optional = re.fullmatch(r"Optional\[(.*)\]", text)
    return f"{optional.group(1)} or None" if optional else text.replace(" | ", " or ")


def _default(value: Any, undefined: Any) -> str:
    if value is undefined or value is None:
        return "unset"
    if value == []:
        return "empty"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, Path):
        return f"`{str(value).replace(str(Path.home()), '~')}`"
    return f"`{value}`"


def settings_table() -> str:
    from pydantic_core import PydanticUndefined

    from reference_server.settings import Settings

    rows = []
    for name, field in Settings.model_fields.items():
        value = field.default_factory() if field.default_factory is not None else field.default  # type: ignore[call-arg]
        rows.append([f"`MAAS_{name.upper()}`", f"`{_type_name(field.annotation)}`", _default(value, PydanticUndefined),
                     field.description or ""])
    return _table(["variable", "type", "default", "meaning"], rows)


def routes_table() -> str:
    from reference_server.http.openapi import openapi_document

    rows = []
    for path, item in openapi_document()["paths"].items():
        for method, operation in item.items():
            keyed = "yes" if operation.get("security") else "no"
            rows.append([f"`{method.upper()}`", f"`{path}`", operation["summary"], keyed])
    return _table(["method", "path", "what", "API key"], rows)


def metrics_table() -> str:
    from reference_server.http.metrics import ServerMetrics

    metrics = ServerMetrics()
    rows = []
    for metric in vars(metrics).values():
        name = getattr(metric, "_name", None)
        if name is None:
            continue
        kind = type(metric).__name__.lower()
        suffix = "_total" if kind == "counter" else ""
        labels = ", ".join(f"`{label}`" for label in getattr(metric, "_labelnames", ()))
        rows.append([f"`{name}{suffix}`", kind, labels, getattr(metric, "_documentation", "")])
    return _table(["metric", "type", "labels", "meaning"], rows)


GENERATORS: dict[str, Callable[[], str]] = {
    "settings": settings_table, "routes": routes_table, "metrics": metrics_table,
}


def on_config(config: Any) -> Any:
    """The site is versioned with the package: its title carries the SDK's version."""
    from maas_sdk import __version__

    config["site_name"] = f"maas {__version__}"
    return config


def on_page_markdown(markdown: str, **kwargs: Any) -> str:
    def replace(match: re.Match[str]) -> str:
        return GENERATORS[match.group(1)]()

    return MARKER.sub(replace, markdown)
