"""Tools and structured outputs on the SDK side, for both clients.

- `tool_param`: a tool given as a plain dict (OpenAI's shape), a pydantic model (its fields are
  the arguments) or a Python function with type hints (its parameters are), as the wire dict.
- `response_format_param`: a pydantic model as `response_format: json_schema`.
- `ParsedChatCompletion[T]`: a completion whose `.parsed` is the reply validated into `T`.
- `ToolLoop`: the state of `run_tools()`: the conversation so far, and the calls to run; the
  clients only send its requests and run its calls (awaiting them in the async client).
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, cast, get_type_hints

from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError, create_model, model_validator

from maas_sdk.protocol import ChatCompletion, ToolCall

__all__ = [
    "ParsedChatCompletion",
    "ToolLoop",
    "ToolParam",
    "ToolRunError",
    "response_format_param",
    "tool_param",
]

T = TypeVar("T")
ModelT = TypeVar("ModelT", bound=BaseModel)
ToolParam = Mapping[str, Any] | type[BaseModel] | Callable[..., Any]


class ParsedChatCompletion(ChatCompletion, Generic[ModelT]):
    """A chat completion asked for with `response_format=SomeModel`: `.parsed` is the reply as a
    `SomeModel` (None when the reply was cut short by `max_tokens`, or was a tool call)."""

    parsed: ModelT | None = None

    @model_validator(mode="after")
    def _parse_reply(self) -> ParsedChatCompletion[ModelT]:
        args = type(self).__pydantic_generic_metadata__["args"]
        if self.parsed is None and args and self.choices:
            choice = self.choices[0]
            text = choice.message.text()
            if choice.finish_reason != "length" and text:
                self.parsed = cast(type[ModelT], args[0]).model_validate_json(text)
        return self


def response_format_param(value: Any) -> tuple[Any, type[BaseModel] | None]:
    """`response_format` for the wire, and the model to parse the reply into (if one was given)."""
    if isinstance(value, type) and issubclass(value, BaseModel):
        schema = {"name": value.__name__, "schema": value.model_json_schema(), "strict": True}
        return {"type": "json_schema", "json_schema": schema}, value
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", exclude_none=True, by_alias=True), None
    return value, None


def _arguments_model(fn: Callable[..., Any]) -> type[BaseModel]:
    """A pydantic model of `fn`'s parameters (their type hints and defaults)."""
    hints = get_type_hints(fn)
    fields: dict[str, Any] = {}
    for name, p in inspect.signature(fn).parameters.items():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        default = ... if p.default is p.empty else p.default
        fields[name] = (hints.get(name, Any), default)
    return create_model(fn.__name__, __config__=ConfigDict(extra="forbid"), **fields)


def _describe(obj: Any) -> str | None:
    doc = inspect.getdoc(obj)
    return doc.strip() if doc else None


def tool_param(tool: ToolParam) -> dict[str, Any]:
    """The wire form (`{"type": "function", "function": {...}}`) of a dict, model or function."""
    if isinstance(tool, Mapping):
        return dict(tool)
    if isinstance(tool, type) and issubclass(tool, BaseModel):
        model, name = tool, tool.__name__
    elif callable(tool):
        model, name = _arguments_model(tool), tool.__name__
    else:
        raise TypeError(f"a tool must be a dict, a pydantic model class or a function, got {tool!r}")
    function: dict[str, Any] = {"name": name, "parameters": model.model_json_schema()}
    description = _describe(tool)
    if description and not (isinstance(tool, type) and description == _describe(BaseModel)):
        function["description"] = description
    return {"type": "function", "function": function}


class ToolRunError(Exception):
    """`run_tools()` could not go on: a call to an unknown tool, or too many rounds."""


@dataclass
class PendingCall:
    """A call the model made, ready to run: `function(**arguments)`."""

    call: ToolCall
    function: Callable[..., Any]
    arguments: dict[str, Any] | None
    error: str | None = None


class ToolLoop:
    """The conversation of one `run_tools()`: send `request_messages()`, run `pending(reply)`,
    record each result with `record()`, until a reply makes no call."""

    def __init__(self, messages: Sequence[Any], functions: Sequence[Callable[..., Any]], max_rounds: int) -> None:
        if not functions:
            raise ValueError("run_tools needs at least one Python function in tools")
        self.messages: list[Any] = list(messages)
        self._functions = {fn.__name__: fn for fn in functions}
        self._models = {name: _arguments_model(fn) for name, fn in self._functions.items()}
        self.tools = [tool_param(fn) for fn in functions]
        self._rounds_left = max_rounds
        self._first = True

    def params(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """The chat parameters of the next request: `tool_choice` holds for the first only (a
        `required` choice would otherwise never let the model answer), later ones are `auto`."""
        values = dict(params)
        if not self._first:
            values.pop("tool_choice", None)
        self._first = False
        return values

    def pending(self, reply: ChatCompletion) -> list[PendingCall]:
        """The calls of `reply` to run (none: `reply` is the answer). The reply joins the conversation."""
        if not reply.choices or not reply.choices[0].message.tool_calls:
            return []
        if self._rounds_left <= 0:
            raise ToolRunError("the model was still calling tools after max_rounds rounds")
        self._rounds_left -= 1
        message = reply.choices[0].message
        self.messages.append({
            "role": "assistant", "content": message.content,
            "tool_calls": [c.model_dump(mode="json") for c in message.tool_calls or []],
        })
        calls: list[PendingCall] = []
        for call in message.tool_calls or []:
            name = call.function.name
            if name not in self._functions:
                raise ToolRunError(f"the model called {name!r}, which is not one of the tools")
            try:
                args = self._models[name].model_validate_json(call.function.arguments or "{}")
                calls.append(PendingCall(call, self._functions[name], dict(args)))
            except ValidationError as exc:  # told to the model, which may correct itself
                calls.append(PendingCall(call, self._functions[name], None, f"invalid arguments: {exc}"))
        return calls

    @staticmethod
    def start(pending: PendingCall) -> Any:
        """Call the function: its result (an awaitable, for an async function), or the error text
        to give the model instead."""
        if pending.arguments is None:
            return pending.error
        try:
            return pending.function(**pending.arguments)
        except Exception as exc:  # noqa: BLE001 - reported to the model, as OpenAI's runner does
            return _failure(exc)

    def run(self, pending: PendingCall) -> None:
        """Run a call of a plain function and record its result (the sync client)."""
        result = self.start(pending)
        if inspect.isawaitable(result):
            close = getattr(result, "close", None)
            if close is not None:
                close()
            raise TypeError(f"tool {pending.call.function.name!r} is async: run it with AsyncMaaS.run_tools")
        self.record(pending, result)

    @staticmethod
    async def finish(result: Any) -> Any:
        """The value of an async function's awaitable result, or its error text."""
        try:
            return await result
        except Exception as exc:  # noqa: BLE001 - reported to the model
            return _failure(exc)

    def record(self, pending: PendingCall, result: Any) -> None:
        """Add a call's result (any JSON-able value, or text) to the conversation."""
        content = result if isinstance(result, str) else json.dumps(TypeAdapter(Any).dump_python(result, mode="json"))
        self.messages.append({"role": "tool", "content": content, "tool_call_id": pending.call.id,
                              "name": pending.call.function.name})


def _failure(exc: Exception) -> str:
    return f"error: {type(exc).__name__}: {exc}"
