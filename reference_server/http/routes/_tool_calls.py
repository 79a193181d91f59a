"""Tools in chat completions: the conversation's tool turns for the chat template, and the
reply's tool calls as `message.tool_calls` or streamed `delta.tool_calls` (OpenAI's shapes).

A chat template with a tool format (it uses `tools`) gets the tools and the earlier calls as
it expects them; any other template gets the default format of `structured.tools`, written
into the system prompt and the assistant turns.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from maas_sdk.protocol import ChatDelta, ChatMessage, FunctionCall, FunctionCallDelta, ToolCall, ToolCallDelta
from reference_server.inference.structured import tools
from reference_server.inference.structured.requests import OutputPlan


def turns_with_tools(
    messages: list[ChatMessage], tokenizer: Any, plan: OutputPlan
) -> tuple[list[dict[str, Any]], list[dict[str, Any]] | None]:
    """The chat template's turns, and its `tools` argument (None unless it has a tool format)."""
    native = "tools" in str(getattr(tokenizer, "chat_template", "") or "")
    turns = [_turn(m, native) for m in messages]
    template_tools = None
    instruction = plan.instruction
    if plan.tool_choice is not None and native:
        template_tools = [
            {"type": "function", "function": {"name": f.name, "description": f.description or "",
                                              "parameters": f.parameters}}
            for f in plan.functions
        ]
        instruction = None
    if instruction:
        if turns and turns[0]["role"] == "system":
            turns[0] = {**turns[0], "content": f"{turns[0]['content']}\n\n{instruction}"}
        else:
            turns.insert(0, {"role": "system", "content": instruction})
    return turns, template_tools


def _turn(message: ChatMessage, native: bool) -> dict[str, Any]:
    role = "system" if message.role == "developer" else message.role
    turn: dict[str, Any] = {"role": role, "content": message.text()}
    if role == "assistant" and message.tool_calls:
        if native:
            turn["tool_calls"] = [
                {"id": c.id, "type": "function",
                 "function": {"name": c.function.name, "arguments": _loads(c.function.arguments)}}
                for c in message.tool_calls
            ]
        else:
            calls = "\n".join(tools.render_call(c.function.name, c.function.arguments) for c in message.tool_calls)
            turn["content"] = f"{turn['content']}\n{calls}" if turn["content"] else calls
    elif role == "tool" and native:
        if message.tool_call_id:
            turn["tool_call_id"] = message.tool_call_id
        if message.name:
            turn["name"] = message.name
    elif role == "tool":
        turn = {"role": "user", "content": tools.render_result(turn["content"])}
    return turn


def _loads(arguments: str) -> Any:
    try:
        return json.loads(arguments)
    except ValueError:
        return arguments


def _call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


def reply_message(text: str, finish: str | None, with_tools: bool) -> tuple[ChatMessage, str | None]:
    """The assistant message of a finished reply, and its finish reason ("tool_calls" if it called)."""
    if not with_tools:
        return ChatMessage(role="assistant", content=text), finish
    content, calls = tools.parse(text)
    tool_calls = [ToolCall(id=_call_id(), function=FunctionCall(name=c.name, arguments=c.arguments)) for c in calls]
    message = ChatMessage(role="assistant", content=content, tool_calls=tool_calls or None)
    return message, ("tool_calls" if tool_calls and finish == "stop" else finish)


class ToolCallDeltas:
    """Turns streamed reply text into content and `tool_calls` deltas."""

    def __init__(self) -> None:
        self._parser = tools.ToolCallParser()
        self._ids: list[str] = []

    def feed(self, text: str, *, final: bool = False) -> list[ChatDelta]:
        events = self._parser.feed(text)
        if final:
            events += self._parser.finish()
        return [self._delta(e) for e in events]

    def finish_reason(self, reason: str) -> str:
        return "tool_calls" if self._parser.calls and reason == "stop" else reason

    def _delta(self, ev: tuple[Any, ...]) -> ChatDelta:
        if ev[0] == "text":
            return ChatDelta(content=ev[1])
        if ev[0] == "call":
            self._ids.append(_call_id())
            return ChatDelta(tool_calls=[ToolCallDelta(index=ev[1], id=self._ids[-1], type="function",
                                                       function=FunctionCallDelta(name=ev[2], arguments=""))])
        return ChatDelta(tool_calls=[ToolCallDelta(index=ev[1], function=FunctionCallDelta(arguments=ev[2]))])
