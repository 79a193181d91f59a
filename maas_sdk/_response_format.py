"""Structured output and tools for the Responses API, on the SDK side.

- `text_format_param`: a pydantic model as `text: {"format": {"type": "json_schema", ...}}`.
- `response_tool_param`: a tool (dict, pydantic model or typed function) in the Responses shape,
  where a function tool's `name` and `parameters` stand beside its `type`.
- `ParsedResponse[T]`: a response whose `.parsed` is its text validated into `T`.
"""

from __future__ import annotations

from typing import Any, Generic, cast

from pydantic import BaseModel, model_validator

from maas_sdk._tools import ModelT, ToolParam, tool_param
from maas_sdk.protocol.responses import Response

__all__ = ["ParsedResponse", "response_tool_param", "text_format_param"]


class ParsedResponse(Response, Generic[ModelT]):
    """A response asked for with `text_format=SomeModel`: `.parsed` is its text as a `SomeModel`
    (None when the response is incomplete, or made a function call instead)."""

    parsed: ModelT | None = None

    @model_validator(mode="after")
    def _parse_text(self) -> ParsedResponse[ModelT]:
        args = type(self).__pydantic_generic_metadata__["args"]
        if self.parsed is None and args and self.status == "completed" and self.output_text:
            self.parsed = cast(type[ModelT], args[0]).model_validate_json(self.output_text)
        return self


def text_format_param(model: type[BaseModel]) -> dict[str, Any]:
    """`text` asking for JSON that validates against `model`'s schema."""
    return {"format": {"type": "json_schema", "name": model.__name__, "schema": model.model_json_schema(),
                       "strict": True}}


def response_tool_param(tool: ToolParam) -> dict[str, Any]:
    """The Responses form of a tool: Chat Completions' `{"type": "function", "function": {...}}`
    flattened; a dict already in the Responses shape is sent as it is."""
    wire = tool_param(tool)
    function = wire.get("function")
    if wire.get("type") == "function" and isinstance(function, dict):
        return {"type": "function", **function}
    return wire
