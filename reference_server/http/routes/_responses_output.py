"""A chat completion as a Responses API response, and its chunks as the Responses API's events.

The reply's text becomes a `message` output item with one `output_text` part, each of its tool
calls a `function_call` item (`call_id` is the tool call's id); a reply cut by the token limit
makes the response `incomplete` (`incomplete_details.reason` = `max_output_tokens`). Streamed,
the chunks become OpenAI's semantic events, numbered by `sequence_number`: each output item is
`added`, filled by deltas, then `done`, between `response.created` / `response.in_progress` and
the terminal `response.completed` / `response.incomplete` (or `error` and `response.failed`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from maas_sdk.protocol import ChatChoiceLogprobs, ChatCompletion, ChatCompletionChunk, ErrorDetail, Usage
from maas_sdk.protocol.responses import (
    FunctionTool,
    IncompleteDetails,
    InputTokensDetails,
    OutputFunctionCall,
    OutputItem,
    OutputMessage,
    OutputText,
    OutputTokensDetails,
    Response,
    ResponseCreateRequest,
    ResponseError,
    ResponseStreamEvent,
    ResponseTextConfig,
    ResponseUsage,
    ToolChoiceFunction,
)
from reference_server.http.routes._responses_input import item_id


def _usage(usage: Usage | None) -> ResponseUsage | None:
    if usage is None:
        return None
    return ResponseUsage(input_tokens=usage.prompt_tokens, input_tokens_details=InputTokensDetails(),
                         output_tokens=usage.completion_tokens, output_tokens_details=OutputTokensDetails(),
                         total_tokens=usage.total_tokens)


@dataclass
class ResponseDraft:
    """What a response says before its first token: its id, when it was created, and the request
    fields it echoes (OpenAI's response repeats the parameters it was made with)."""

    body: ResponseCreateRequest
    id: str = field(default_factory=lambda: item_id("resp"))
    created_at: int = field(default_factory=lambda: int(time.time()))

    def response(self, status: str, output: list[OutputItem] | None = None, usage: Usage | None = None,
                 error: ErrorDetail | None = None) -> Response:
        body = self.body
        incomplete = IncompleteDetails(reason="max_output_tokens") if status == "incomplete" else None
        choice = body.tool_choice
        return Response(
            id=self.id, created_at=self.created_at, status=status,
            completed_at=int(time.time()) if status == "completed" else None,
            error=ResponseError(code=error.code, message=error.message) if error is not None else None,
            incomplete_details=incomplete, instructions=body.instructions, max_output_tokens=body.max_output_tokens,
            model=body.model, output=list(output or []), parallel_tool_calls=body.parallel_tool_calls is True,
            previous_response_id=body.previous_response_id, store=body.store, temperature=body.temperature,
            text=ResponseTextConfig(format=body.text.format.model_dump(mode="json", by_alias=True, exclude_none=True)
                                    if body.text is not None and body.text.format is not None else {"type": "text"}),
            tool_choice=choice.model_dump(mode="json") if isinstance(choice, ToolChoiceFunction) else choice or "auto",
            tools=[t.model_dump(mode="json", exclude_none=True) for t in body.tools or [] if isinstance(t, FunctionTool)],
            top_p=body.top_p, top_logprobs=body.top_logprobs, truncation=body.truncation, usage=_usage(usage),
            user=body.user,
            metadata=dict(body.metadata or {}),
        )


def _status(finish_reason: str | None) -> str:
    return "incomplete" if finish_reason == "length" else "completed"


def response_of(draft: ResponseDraft, completion: ChatCompletion) -> Response:
    """The response whose output is the completion's first (only) choice."""
    choice = completion.choices[0]
    message, status = choice.message, _status(choice.finish_reason)
    output: list[OutputItem] = []
    text = message.text()
    if text or not message.tool_calls:
        logprobs = _logprobs(choice.logprobs) if not message.tool_calls else []
        output.append(OutputMessage(id=item_id("msg"), status=status,
                                    content=[OutputText(text=text, logprobs=logprobs)]))
    for call in message.tool_calls or []:
        output.append(OutputFunctionCall(id=item_id("fc"), call_id=call.id, name=call.function.name,
                                         arguments=call.function.arguments))
    return draft.response(status, output, completion.usage)


def _logprobs(logprobs: ChatChoiceLogprobs | None) -> list[Any]:
    """Chat logprobs as the Responses API's (the same `token`, `logprob`, `bytes`, `top_logprobs`)."""
    if logprobs is None or not logprobs.content:
        return []
    return [lp.model_dump(mode="json") for lp in logprobs.content]


def output_items(response: Response) -> list[dict[str, Any]]:
    """The response's output as items of the conversation a later request may continue."""
    return [item.model_dump(mode="json", exclude_none=True) for item in response.output]


class ResponseEvents:
    """Turns the chunks of one streamed chat completion into the events of one response."""

    def __init__(self, draft: ResponseDraft) -> None:
        self.draft = draft
        self.output: list[OutputItem] = []
        self._sequence = 0
        self._message: str | None = None  # the open message item's id
        self._text: list[str] = []
        self._logprobs: list[Any] = []
        self._call: OutputFunctionCall | None = None  # the open function call (arguments so far)
        self._finish: str | None = None
        self._usage: Usage | None = None

    def _event(self, kind: str, **fields: Any) -> ResponseStreamEvent:
        event = ResponseStreamEvent(type=kind, sequence_number=self._sequence, **fields)
        self._sequence += 1
        return event

    def start(self) -> list[ResponseStreamEvent]:
        response = self.draft.response("in_progress")
        return [self._event("response.created", response=response),
                self._event("response.in_progress", response=response)]

    def feed(self, chunk: ChatCompletionChunk) -> list[ResponseStreamEvent]:
        events: list[ResponseStreamEvent] = []
        if chunk.usage is not None:
            self._usage = chunk.usage
        for choice in chunk.choices:
            delta = choice.delta
            if delta.content:
                events += self._text_delta(delta.content, _logprobs(choice.logprobs))
            for call in delta.tool_calls or []:
                function = call.function
                if call.id is not None:
                    events += self._close()
                    events += self._open_call(call.id, function.name if function and function.name else "")
                if function is not None and function.arguments and self._call is not None:
                    self._call.arguments += function.arguments
                    events.append(self._event("response.function_call_arguments.delta", item_id=self._call.id,
                                              output_index=len(self.output), delta=function.arguments))
            if choice.finish_reason is not None:
                self._finish = choice.finish_reason
        return events

    def _open_message(self) -> list[ResponseStreamEvent]:
        events = self._close()
        self._message = item_id("msg")
        item = OutputMessage(id=self._message, status="in_progress")
        return [*events, self._event("response.output_item.added", output_index=len(self.output), item=item),
                self._event("response.content_part.added", item_id=self._message, output_index=len(self.output),
                            content_index=0, part=OutputText(text=""))]

    def _text_delta(self, text: str, logprobs: list[Any]) -> list[ResponseStreamEvent]:
        events = self._open_message() if self._message is None else []
        self._text.append(text)
        self._logprobs += logprobs
        events.append(self._event("response.output_text.delta", item_id=self._message, output_index=len(self.output),
                                  content_index=0, delta=text, logprobs=logprobs))
        return events

    def _open_call(self, call_id: str, name: str) -> list[ResponseStreamEvent]:
        self._call = OutputFunctionCall(id=item_id("fc"), call_id=call_id, name=name, arguments="",
                                        status="in_progress")
        return [self._event("response.output_item.added", output_index=len(self.output), item=self._call)]

    def _close(self, status: str = "completed") -> list[ResponseStreamEvent]:
        """Events that finish the open item (if any), which joins the output."""
        index = len(self.output)
        if self._message is not None:
            text, item_id_, logprobs = "".join(self._text), self._message, self._logprobs
            part = OutputText(text=text, logprobs=logprobs)
            message = OutputMessage(id=item_id_, status=status, content=[part])
            self._message, self._text, self._logprobs = None, [], []
            self.output.append(message)
            return [self._event("response.output_text.done", item_id=item_id_, output_index=index, content_index=0,
                                text=text, logprobs=logprobs),
                    self._event("response.content_part.done", item_id=item_id_, output_index=index,
                                content_index=0, part=part),
                    self._event("response.output_item.done", output_index=index, item=message)]
        if self._call is not None:
            call = self._call.model_copy(update={"status": status})
            self._call = None
            self.output.append(call)
            return [self._event("response.function_call_arguments.done", item_id=call.id, output_index=index,
                                name=call.name, arguments=call.arguments),
                    self._event("response.output_item.done", output_index=index, item=call)]
        return []

    def finish(self) -> tuple[Response, list[ResponseStreamEvent]]:
        """The whole response, and the events that end the stream with it."""
        status = _status(self._finish)
        events = self._close(status)
        if not self.output:  # nothing generated at all: still one (empty) message, as without streaming
            events += self._open_message()
            events += self._close(status)
        response = self.draft.response(status, self.output, self._usage)
        return response, [*events, self._event(f"response.{status}", response=response)]

    def failure(self, detail: ErrorDetail) -> list[ResponseStreamEvent]:
        """An `error` event (its fields both flat, as OpenAI documents it, and under `error`, as
        OpenAI's servers send it and its Python client raises on), then `response.failed`."""
        response = self.draft.response("failed", self.output, self._usage, detail)
        return [self._event("error", code=detail.code, message=detail.message, param=detail.param, error=detail),
                self._event("response.failed", response=response)]
