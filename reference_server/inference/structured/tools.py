"""The tool-call format: how tools are described to the model, the grammar that enforces
calls, and the parser that turns generated text back into calls (whole or streamed).

A call is written `<tool_call>{"name": "NAME", "arguments": {...}}</tool_call>` (the format
of Hermes and Qwen models), calls one after another separated by a newline. The grammar is an
xgrammar structural tag whose tags begin with the name already fixed, so the arguments are
compiled against that function's own parameter schema:

- `required` and a named function: only calls, at least one (one when parallel calls are off);
- `auto`: free text, but once the model writes `<tool_call>` the call is constrained.

One call per reply unless the request sets `parallel_tool_calls: true`: a small model given
the choice repeats its call until it runs out of tokens.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from reference_server.inference.structured.schema import check_schema, normal_form
from reference_server.inference.structured.specs import GrammarSpec, structural_tag

OPEN = "<tool_call>"
CLOSE = "</tool_call>"
RESULT_OPEN = "<tool_response>"
RESULT_CLOSE = "</tool_response>"
_ARGS_END = "}" + CLOSE
_HEAD = re.compile(r'^\{"name": "([A-Za-z0-9_-]{1,64})", "arguments": ')
# A call header is short; text after <tool_call> that does not match one this long is no call.
_MAX_HEAD = 120
_NO_PARAMETERS: dict[str, Any] = {"type": "object", "properties": {}, "additionalProperties": False}

Choice = Literal["auto", "required"]


@dataclass(frozen=True)
class Function:
    name: str
    description: str | None
    parameters: dict[str, Any]


def functions(tools: Sequence[Any]) -> list[Function]:
    """The functions of `tools` (protocol `ToolDefinition`s), their parameter schemas checked."""
    out: list[Function] = []
    for i, tool in enumerate(tools):
        fn = tool.function
        parameters = fn.parameters if fn.parameters else _NO_PARAMETERS
        check_schema(parameters, f"tools[{i}].function.parameters")
        out.append(Function(fn.name, fn.description, parameters))
    return out


def call_grammar(fns: Sequence[Function], choice: Choice, parallel: bool) -> GrammarSpec:
    """The grammar for calls to `fns` (already narrowed to the named one, if any)."""
    tags = [
        {
            "type": "tag",
            "begin": f'{OPEN}{{"name": "{fn.name}", "arguments": ',
            # One whitespace at most between tokens: `{"a": 1}`, not a page of indentation.
            "content": {"type": "json_schema", "json_schema": normal_form(fn.parameters), "max_whitespace_cnt": 1},
            "end": _ARGS_END,
        }
        for fn in fns
    ]
    if choice == "required":
        fmt = {"type": "tags_with_separator", "tags": tags, "separator": "\n", "at_least_one": True,
               "stop_after_first": not parallel}
    else:
        fmt = {"type": "triggered_tags", "triggers": [OPEN], "tags": tags, "at_least_one": False,
               "stop_after_first": not parallel, "excludes": ["<tool_r", "</tool"]}
    return structural_tag({"type": "structural_tag", "format": fmt}, "tools")


def text_only_grammar() -> GrammarSpec:
    """Free text without call or result markup: `tool_choice: "none"` in a conversation with
    tools, where a small model would otherwise imitate the earlier turns' calls as text."""
    fmt = {"type": "any_text", "excludes": ["<tool", "</tool"]}
    return structural_tag({"type": "structural_tag", "format": fmt}, "tool_choice")


def system_prompt(fns: Sequence[Function], choice: Choice) -> str:
    """The default description of the tools, for models whose chat template has no tool format."""
    lines = [
        "You can call functions. Their definitions (JSON Schema for the arguments):",
        "<tools>",
        *(json.dumps({"name": f.name, "description": f.description or "", "parameters": f.parameters},
                     ensure_ascii=False) for f in fns),
        "</tools>",
        f'To call a function, answer with {OPEN}{{"name": <function name>, "arguments": <arguments object>}}{CLOSE}.',
        f"Function results come back in {RESULT_OPEN} tags; then answer the user with them, in plain words.",
    ]
    if choice == "required":
        lines.append("Answer now with a function call.")
    return "\n".join(lines)


def render_result(content: str) -> str:
    """A tool's result, as the default format gives it back to the model (in a user turn: a
    small model answers from it there, while it only repeats its call after a `tool` turn)."""
    return f"{RESULT_OPEN}\n{content}\n{RESULT_CLOSE}"


def render_call(name: str, arguments: str) -> str:
    """An earlier assistant call, as the model would have written it."""
    return f'{OPEN}{{"name": "{name}", "arguments": {arguments or "{}"}}}{CLOSE}'


@dataclass
class ParsedCall:
    name: str
    arguments: str


@dataclass
class ToolCallParser:
    """Splits generated text into content and calls, as the text streams in.

    `feed()` returns the events the new text completes: `("text", str)`, `("call", index,
    name)` when a call's name is known, `("arguments", index, str)` for each piece of its
    arguments. Text that may be the start of a tag is held back until it is clear;
    whitespace between calls is not content.
    """

    calls: list[ParsedCall] = field(default_factory=list)
    content: list[str] = field(default_factory=list)
    _buffer: str = ""
    _state: Literal["text", "head", "arguments"] = "text"

    def feed(self, text: str) -> list[tuple[Any, ...]]:
        self._buffer += text
        events: list[tuple[Any, ...]] = []
        while True:
            before = (self._state, len(self._buffer))
            if self._state == "text":
                self._text(events, final=False)
            elif self._state == "head":
                self._head(events)
            else:
                self._arguments(events)
            if (self._state, len(self._buffer)) == before:
                return events

    def finish(self) -> list[tuple[Any, ...]]:
        """The end of the generation: release what was held back."""
        events = self.feed("")
        if self._state == "text":
            self._text(events, final=True)
        elif self._state == "arguments" and self._buffer:
            events.append(self._add_arguments(self._buffer))
            self._buffer = ""
        elif self._buffer:  # an unfinished header: it was text after all
            self._emit_text(events, OPEN + self._buffer)
            self._buffer = ""
        return events

    def _text(self, events: list[tuple[Any, ...]], final: bool) -> None:
        start = self._buffer.find(OPEN)
        if start >= 0:
            self._emit_text(events, self._buffer[:start].rstrip() if self.calls else self._buffer[:start])
            self._buffer = self._buffer[start + len(OPEN):]
            self._state = "head"
            return
        if final:
            self._emit_text(events, self._buffer)
            self._buffer = ""
            return
        keep = _partial_suffix(self._buffer, OPEN)
        cut = len(self._buffer) - keep
        safe = self._buffer[:cut]
        # Trailing whitespace is held too: it may only separate the text from a call.
        stripped = safe.rstrip()
        self._emit_text(events, stripped)
        self._buffer = safe[len(stripped):] + self._buffer[cut:]

    def _head(self, events: list[tuple[Any, ...]]) -> None:
        match = _HEAD.match(self._buffer)
        if match:
            self.calls.append(ParsedCall(match.group(1), ""))
            events.append(("call", len(self.calls) - 1, match.group(1)))
            self._buffer = self._buffer[match.end():]
            self._state = "arguments"
        elif len(self._buffer) > _MAX_HEAD:
            self._emit_text(events, OPEN + self._buffer)
            self._buffer = ""
            self._state = "text"

    def _arguments(self, events: list[tuple[Any, ...]]) -> None:
        end = self._buffer.find(_ARGS_END)
        if end >= 0:
            if end:
                events.append(self._add_arguments(self._buffer[:end]))
            self._buffer = self._buffer[end + len(_ARGS_END):].lstrip()
            self._state = "text"
            return
        cut = len(self._buffer) - _partial_suffix(self._buffer, _ARGS_END)
        if cut > 0:
            events.append(self._add_arguments(self._buffer[:cut]))
            self._buffer = self._buffer[cut:]

    def _add_arguments(self, piece: str) -> tuple[Any, ...]:
        call = self.calls[-1]
        call.arguments += piece
        return ("arguments", len(self.calls) - 1, piece)

    def _emit_text(self, events: list[tuple[Any, ...]], text: str) -> None:
        if text and not (self.calls and not text.strip()):
            self.content.append(text)
            events.append(("text", text))


def parse(text: str) -> tuple[str | None, list[ParsedCall]]:
    """Content (None if there is none) and calls of a finished generation."""
    parser = ToolCallParser()
    parser.feed(text)
    parser.finish()
    content = "".join(parser.content)
    return (content if content.strip() else None), parser.calls


def _partial_suffix(text: str, marker: str) -> int:
    """Length of the longest end of `text` that is a proper start of `marker`."""
    for k in range(min(len(marker) - 1, len(text)), 0, -1):
        if text.endswith(marker[:k]):
            return k
    return 0
