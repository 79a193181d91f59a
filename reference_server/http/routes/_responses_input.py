"""A Responses API request as the Chat Completions request that serves it.

The Responses API is served by translation: its input items become chat messages (a
`function_call` joins the assistant turn before it as a tool call, a `function_call_output`
becomes a `tool` message), `instructions` a system message, its tools, tool choice and
`text.format` their Chat Completions forms. What cannot be translated (built-in tools,
images, background runs, ...) is refused here with a 400 naming the parameter, and the errors
the chat path raises are renamed to the Responses parameters they concern.

Items are kept in one normalized form, each with an id: what `input_items` lists, what a
stored conversation holds, and what the next request's `previous_response_id` continues.
"""

from __future__ import annotations

import re
import secrets
from typing import Any

from pydantic import ValidationError

from maas_sdk.protocol import ChatCompletionRequest
from maas_sdk.protocol.responses import (
    BuiltinTool,
    FunctionCallItem,
    FunctionCallOutputItem,
    FunctionTool,
    InputMedia,
    MessageItem,
    OtherItem,
    ResponseCreateRequest,
    TextFormatJSONObject,
    TextFormatJSONSchema,
    ToolChoiceFunction,
    ToolChoiceOther,
)
from reference_server.errors import DomainError
from reference_server.http.errors import bad_request
from reference_server.http.parsing import validation_error

Item = dict[str, Any]

# Chat Completions parameter names (in `param` and in messages) -> the Responses ones.
_RENAMES = (
    (re.compile(r"response_format\.json_schema\.schema"), "text.format.schema"),
    (re.compile(r"response_format(\.json_schema)?"), "text.format"),
    (re.compile(r"tools\[(\d+)\]\.function\."), r"tools[\1]."),
    (re.compile(r"\bmax_(completion_)?tokens\b"), "max_output_tokens"),
    (re.compile(r"^messages\b.*"), "input"),
)


def item_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(24)}"


def refuse_unsupported(body: ResponseCreateRequest) -> None:
    """400 for what the request asks that this server cannot do, naming the parameter."""
    if body.background:
        raise bad_request("background responses are not supported; leave background out or false.",
                          param="background", code="unsupported_parameter")
    if body.conversation is not None:
        raise bad_request("The Conversations API is not served; continue a conversation with "
                          "previous_response_id.", param="conversation", code="unsupported_parameter")
    if body.prompt is not None:
        raise bad_request("Stored prompt templates are not served; send the prompt as input and instructions.",
                          param="prompt", code="unsupported_parameter")
    for i, tool in enumerate(body.tools or []):
        if isinstance(tool, BuiltinTool):
            raise bad_request(f"tools[{i}] is the built-in tool {tool.type!r}, which this server does not have; "
                              "only function tools are supported.", param=f"tools[{i}].type",
                              code="unsupported_tool")
    if isinstance(body.tool_choice, ToolChoiceOther):
        raise bad_request(f"tool_choice of type {body.tool_choice.type!r} is not supported; use 'none', 'auto', "
                          "'required' or a function.", param="tool_choice", code="unsupported_parameter")
    if body.input is None and body.previous_response_id is None:
        raise bad_request("input is required (unless previous_response_id continues a conversation).",
                          param="input", code="missing_required_parameter")


def input_items(body: ResponseCreateRequest) -> list[Item]:
    """The request's input as normalized items, each with an id (kept when the client gave one)."""
    if body.input is None:
        return []
    if isinstance(body.input, str):
        return [_message("user", [{"type": "input_text", "text": body.input}])]
    items: list[Item] = []
    for i, item in enumerate(body.input):
        if isinstance(item, MessageItem):
            items.append(_message(item.role, _parts(item, i), item.id))
        elif isinstance(item, FunctionCallItem):
            items.append({"id": item.id or item_id("fc"), "type": "function_call", "status": "completed",
                          "call_id": item.call_id, "name": item.name, "arguments": item.arguments})
        elif isinstance(item, FunctionCallOutputItem):
            items.append({"id": item.id or item_id("fco"), "type": "function_call_output", "status": "completed",
                          "call_id": item.call_id, "output": item.text()})
        else:
            assert isinstance(item, OtherItem)
            raise bad_request(f"input[{i}] is an item of type {item.type!r}, which is not supported; send "
                              "messages, function_call and function_call_output items.", param=f"input[{i}].type",
                              code="unsupported_item")
    return items


def _message(role: str, content: list[Item], given_id: str | None = None) -> Item:
    return {"id": given_id or item_id("msg"), "type": "message", "role": role, "status": "completed",
            "content": content}


def _parts(item: MessageItem, index: int) -> list[Item]:
    kind = "output_text" if item.role == "assistant" else "input_text"
    if isinstance(item.content, str):
        return [_part(kind, item.content)]
    for j, part in enumerate(item.content):
        if isinstance(part, InputMedia):
            raise bad_request(f"input[{index}].content[{j}] is {part.type}; the served models read text only.",
                              param=f"input[{index}].content[{j}].type", code="unsupported_content")
    return [_part(kind, item.text())]


def _part(kind: str, text: str) -> Item:
    return {"type": kind, "text": text, "annotations": []} if kind == "output_text" else {"type": kind, "text": text}


def _text(content: list[Item]) -> str:
    return "".join(str(part.get("text", "")) for part in content)


def chat_messages(instructions: str | None, items: list[Item]) -> list[Item]:
    """The chat messages of a conversation: `instructions` as a system message, then the items;
    consecutive function calls join the assistant turn they follow."""
    messages: list[Item] = [{"role": "system", "content": instructions}] if instructions else []
    names: dict[str, str] = {}
    for item in items:
        kind = item["type"]
        if kind == "message":
            messages.append({"role": item["role"], "content": _text(item["content"])})
        elif kind == "function_call":
            names[item["call_id"]] = item["name"]
            call = {"id": item["call_id"], "type": "function",
                    "function": {"name": item["name"], "arguments": item["arguments"]}}
            last = messages[-1] if messages else None
            if last is not None and last["role"] == "assistant":
                last.setdefault("tool_calls", []).append(call)
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        else:
            message = {"role": "tool", "tool_call_id": item["call_id"], "content": item["output"]}
            if item["call_id"] in names:
                message["name"] = names[item["call_id"]]
            messages.append(message)
    return messages


def chat_request(body: ResponseCreateRequest, conversation: list[Item]) -> ChatCompletionRequest:
    """The Chat Completions request that answers `body` over `conversation` (its items, the
    previous response's included)."""
    functions = [t for t in body.tools or [] if isinstance(t, FunctionTool)]
    request: dict[str, Any] = {
        "model": body.model,
        "messages": chat_messages(body.instructions, conversation),
        "max_completion_tokens": body.max_output_tokens,
        "temperature": body.temperature,
        "top_p": body.top_p,
        "seed": body.seed,
    }
    if body.logprobs:
        request["logprobs"] = True
        request["top_logprobs"] = body.top_logprobs or 0
    if functions:
        request["tools"] = [{"type": "function", "function": {
            "name": t.name, "description": t.description, "parameters": t.parameters, "strict": t.strict}}
            for t in functions]
        request["parallel_tool_calls"] = body.parallel_tool_calls
    choice = body.tool_choice
    if isinstance(choice, ToolChoiceFunction):
        request["tool_choice"] = {"type": "function", "function": {"name": choice.name}}
    elif isinstance(choice, str) and (functions or choice == "required"):
        request["tool_choice"] = choice  # "auto" and "none" without tools mean what no tool_choice means
    text_format = body.text.format if body.text is not None else None
    if isinstance(text_format, TextFormatJSONObject):
        request["response_format"] = {"type": "json_object"}
    elif isinstance(text_format, TextFormatJSONSchema):
        request["response_format"] = {"type": "json_schema", "json_schema": {
            "name": text_format.name, "description": text_format.description, "schema": text_format.schema_,
            "strict": text_format.strict}}
    try:
        return ChatCompletionRequest.model_validate(request)
    except ValidationError as exc:
        raise renamed(validation_error(exc)) from None


def renamed(error: DomainError) -> DomainError:
    """`error` of the chat path, with the parameter it names (and its message) in Responses terms
    (changed in place: it is raised again at once)."""
    param, message = error.param, error.message
    for pattern, replacement in _RENAMES:
        if param is not None:
            param = pattern.sub(replacement, param)
        if pattern.pattern.startswith("^"):
            continue
        message = pattern.sub(replacement, message)
    error.param, error.message, error.args = param, message, (message,)
    return error
