"""Anthropic's Messages API translated onto Chat Completions, both ways.

A Messages request becomes a `ChatCompletionRequest` (system blocks into a system message,
`tool_use` blocks into the assistant's `tool_calls`, `tool_result` blocks into tool messages,
`tool_choice` and `output_config.format` into their Chat Completions forms), so validation,
tools, constrained decoding, sampling and limits are the chat route's own. Its answer comes
back as a `Message` or as Anthropic's stream events. Errors raised on the chat side name Chat
Completions parameters; `renamed` names the Messages parameters instead.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from maas_sdk.protocol import ChatCompletion, ChatCompletionChunk, ChatCompletionRequest, ChatMessage
from maas_sdk.protocol import messages as m
from reference_server.errors import DomainError
from reference_server.http.errors import HTTPError, bad_request
from reference_server.http.parsing import validation_error

# Chat Completions parameters that have another name in the Messages API.
_PARAM_NAMES = {
    "stop": "stop_sequences",
    "max_completion_tokens": "max_tokens",
    "response_format": "output_config.format",
    "parallel_tool_calls": "tool_choice.disable_parallel_tool_use",
}
_CHAT_MESSAGE = re.compile(r"messages\[(\d+)\]")


@dataclass
class Translated:
    """The chat request, and for each of its messages the Messages path it came from."""

    chat: ChatCompletionRequest
    origins: list[str] = field(default_factory=list)


def message_id() -> str:
    return f"msg_{uuid.uuid4().hex[:24]}"


def tool_use_id(call_id: str) -> str:
    """Anthropic's `toolu_` form of a chat tool call id (ids sent back are used as they are)."""
    return "toolu_" + call_id.removeprefix("call_")


def to_chat(body: m.MessagesPrompt) -> Translated:
    """The Chat Completions request that `body` stands for."""
    messages: list[ChatMessage] = []
    origins: list[str] = []
    if body.system:
        messages.append(ChatMessage(role="system", content="\n".join(b.text for b in body.system)))
        origins.append("system")
    for i, turn in enumerate(body.messages):
        for message in _turn(turn, f"messages[{i}]"):
            messages.append(message)
            origins.append(f"messages[{i}]")
    if not messages or messages[-1].role == "system":
        raise bad_request("messages must hold at least one user turn with content.", param="messages")
    fields: dict[str, Any] = {"model": body.model, "messages": messages}
    if body.tools:
        fields["tools"] = [{"type": "function", "function": {"name": t.name, "description": t.description,
                                                             "parameters": t.input_schema}} for t in body.tools]
    choice = body.tool_choice
    if choice is not None:
        fields["tool_choice"] = {"auto": "auto", "any": "required", "none": "none"}.get(choice.type) or {
            "type": "function", "function": {"name": choice.name}}
    if choice is not None and "disable_parallel_tool_use" in choice.model_fields_set:
        # Unsaid, a reply makes one call, as in Chat Completions: a small model offered more
        # calls repeats the first until max_tokens.
        fields["parallel_tool_calls"] = not choice.disable_parallel_tool_use
    if body.output_config is not None and body.output_config.format is not None:
        fields["response_format"] = {"type": "json_schema", "json_schema": {
            "name": "output", "schema": body.output_config.format.schema_, "strict": True}}
    if isinstance(body, m.MessageCreateRequest):
        fields.update(max_tokens=body.max_tokens, stop=body.stop_sequences, temperature=body.temperature,
                      top_p=body.top_p, top_k=body.top_k, stream=body.stream)
        if body.stream:
            fields["stream_options"] = {"include_usage": True}
    try:
        chat = ChatCompletionRequest.model_validate(fields)
    except ValidationError as exc:
        raise renamed(validation_error(exc), origins) from None
    return Translated(chat, origins)


def _turn(turn: m.MessageParam, where: str) -> list[ChatMessage]:
    """One Messages turn as chat messages: a user turn's tool results become tool messages (in
    their order, before its text), an assistant turn's tool uses its `tool_calls`."""
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    results: list[ChatMessage] = []
    for j, block in enumerate(turn.content):
        at = f"{where}.content[{j}]"
        if isinstance(block, m.TextBlockParam):
            texts.append(block.text)
        elif isinstance(block, m.UnsupportedBlockParam):
            raise _unsupported(block.type, at)
        elif isinstance(block, m.ToolUseBlockParam):
            if turn.role != "assistant":
                raise bad_request(f"{at}: tool_use blocks belong in assistant turns.", param=at)
            calls.append({"id": block.id, "type": "function",
                          "function": {"name": block.name, "arguments": json.dumps(block.input)}})
        elif isinstance(block, m.ToolResultBlockParam):
            if turn.role != "user":
                raise bad_request(f"{at}: tool_result blocks belong in user turns.", param=at)
            results.append(ChatMessage(role="tool", tool_call_id=block.tool_use_id,
                                       content=_result_text(block, at)))
    out = results
    text = "".join(texts)
    if turn.role == "assistant" and (text or calls):
        out.append(ChatMessage.model_validate({"role": "assistant", "content": text or None,
                                               "tool_calls": calls or None}))
    elif turn.role == "user" and (text or not results):
        out.append(ChatMessage(role="user", content=text))
    return out


def _result_text(block: m.ToolResultBlockParam, where: str) -> str:
    parts = []
    for k, inner in enumerate(block.content):
        if isinstance(inner, m.UnsupportedBlockParam):
            raise _unsupported(inner.type, f"{where}.content[{k}]")
        parts.append(inner.text)
    text = "".join(parts)
    return f"Error: {text}" if block.is_error else text


def _unsupported(kind: str, where: str) -> DomainError:
    return bad_request(f"{where}: {kind} blocks are not supported; the served models read text only.",
                       param=where, code="unsupported_content")


def renamed(exc: DomainError | HTTPError, origins: list[str]) -> DomainError | HTTPError:
    """`exc` with the Chat Completions parameter it names replaced by the Messages one: in
    `param`, and in the message where the name cannot be a plain word (`stop` can)."""

    def rename(text: str, whole: bool) -> str:
        text = _CHAT_MESSAGE.sub(lambda hit: _origin(origins, int(hit.group(1))), text)
        for chat_name, name in _PARAM_NAMES.items():
            if whole or "_" in chat_name:
                text = re.sub(rf"(?<![\w.]){re.escape(chat_name)}(?![\w])", name, text)
        return text

    exc.message = rename(exc.message, whole=False)
    exc.param = rename(exc.param, whole=True) if exc.param else exc.param
    exc.args = (exc.message,)
    return exc


def _origin(origins: list[str], index: int) -> str:
    return origins[index] if 0 <= index < len(origins) else "messages"


# ----- the reply -----


def stop_reason(finish: str | None, stop_sequence: str | None) -> str | None:
    if finish == "stop":
        return "stop_sequence" if stop_sequence is not None else "end_turn"
    return {"length": "max_tokens", "tool_calls": "tool_use"}.get(finish or "", finish)


def to_message(completion: ChatCompletion, model: str, stop_sequence: str | None) -> m.Message:
    """The chat completion's first (only) choice as Anthropic's reply."""
    choice = completion.choices[0]
    content: list[m.TextBlock | m.ToolUseBlock] = []
    text = choice.message.text()
    if text or not choice.message.tool_calls:
        content.append(m.TextBlock(text=text))
    for call in choice.message.tool_calls or []:
        content.append(m.ToolUseBlock(id=tool_use_id(call.id), name=call.function.name,
                                      input=_input(call.function.arguments)))
    reason = stop_reason(choice.finish_reason, stop_sequence)
    usage = completion.usage
    return m.Message(id=message_id(), content=content, model=model, stop_reason=reason,
                     stop_sequence=stop_sequence if reason == "stop_sequence" else None,
                     usage=m.MessagesUsage(input_tokens=usage.prompt_tokens if usage else 0,
                                           output_tokens=usage.completion_tokens if usage else 0))


def _input(arguments: str) -> dict[str, Any]:
    """A call's input; arguments that `max_tokens` cut short give `{}`."""
    try:
        value = json.loads(arguments)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


class StreamTranslator:
    """Chat Completions chunks in, Anthropic's content block events out: a text block for text,
    a `tool_use` block per call (its input as `input_json_delta`s), each started and stopped in
    turn. `finish` gives the closing events once the chunks have ended."""

    def __init__(self) -> None:
        self.index = -1
        self.open: str | None = None
        self.finish_reason: str | None = None
        self.output_tokens = 0

    def feed(self, chunk: ChatCompletionChunk) -> list[m.StreamEvent]:
        if chunk.usage is not None:
            self.output_tokens = chunk.usage.completion_tokens
        events: list[m.StreamEvent] = []
        for choice in chunk.choices:
            delta = choice.delta
            if delta.content:
                if self.open != "text":
                    events += self._start(m.TextBlock(text=""))
                events.append(m.ContentBlockDeltaEvent(index=self.index, delta=m.TextDelta(text=delta.content)))
            for call in delta.tool_calls or []:
                if call.id is not None:
                    name = call.function.name if call.function and call.function.name else ""
                    events += self._start(m.ToolUseBlock(id=tool_use_id(call.id), name=name, input={}))
                arguments = call.function.arguments if call.function else None
                if arguments:
                    events.append(m.ContentBlockDeltaEvent(index=self.index,
                                                           delta=m.InputJSONDelta(partial_json=arguments)))
            if choice.finish_reason is not None:
                self.finish_reason = choice.finish_reason
        return events

    def finish(self, stop_sequence: str | None) -> list[m.StreamEvent]:
        events: list[m.StreamEvent] = []
        if self.index < 0:  # nothing at all was said: one empty text block, as the whole reply has
            events += self._start(m.TextBlock(text=""))
        events += self._stop()
        reason = stop_reason(self.finish_reason, stop_sequence)
        delta = m.MessageDelta(stop_reason=reason, stop_sequence=stop_sequence if reason == "stop_sequence" else None)
        events.append(m.MessageDeltaEvent(delta=delta, usage=m.MessageDeltaUsage(output_tokens=self.output_tokens)))
        events.append(m.MessageStopEvent())
        return events

    def _start(self, block: m.TextBlock | m.ToolUseBlock) -> list[m.StreamEvent]:
        events = self._stop()
        self.index += 1
        self.open = block.type
        events.append(m.ContentBlockStartEvent(index=self.index, content_block=block))
        return events

    def _stop(self) -> list[m.StreamEvent]:
        if self.open is None:
            return []
        self.open = None
        return [m.ContentBlockStopEvent(index=self.index)]
