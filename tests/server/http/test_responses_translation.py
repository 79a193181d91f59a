"""The Responses API's translation onto Chat Completions, piece by piece: items into chat
messages, chat errors renamed into Responses parameters, chunks into OpenAI's events (text,
calls, failures), and the oldest items dropped by `truncation: "auto"`."""

from __future__ import annotations

from typing import Any

from maas_sdk.protocol import ChatCompletionChunk, ErrorDetail
from maas_sdk.protocol.responses import ResponseCreateRequest
from reference_server.errors import InvalidRequest
from reference_server.http.routes._responses_input import chat_messages, chat_request, input_items, renamed
from reference_server.http.routes._responses_output import ResponseDraft, ResponseEvents
from reference_server.http.routes.responses import _without_oldest


def request(**fields: Any) -> ResponseCreateRequest:
    return ResponseCreateRequest.model_validate({"model": "m", **fields})


def chunk(content: str | None = None, finish: str | None = None, calls: list[dict[str, Any]] | None = None,
          usage: dict[str, int] | None = None) -> ChatCompletionChunk:
    delta: dict[str, Any] = {}
    if content is not None:
        delta["content"] = content
    if calls is not None:
        delta["tool_calls"] = calls
    choices = [] if usage else [{"index": 0, "delta": delta, "finish_reason": finish}]
    return ChatCompletionChunk.model_validate({"id": "c", "created": 0, "model": "m", "choices": choices,
                                              "usage": usage})


def test_items_become_chat_messages() -> None:
    body = request(instructions="Be brief.", input=[
        {"role": "user", "content": [{"type": "input_text", "text": "Weather "}, {"type": "input_text", "text": "?"}]},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Checking."}]},
        {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": '{"city": "Paris"}'},
        {"type": "function_call", "call_id": "call_2", "name": "get_weather", "arguments": '{"city": "Rome"}'},
        {"type": "function_call_output", "call_id": "call_1", "output": "Sunny"},
        {"type": "function_call_output", "call_id": "call_2", "output": [{"type": "input_text", "text": "Rain"}]},
    ])
    items = input_items(body)
    assert [i["id"][:3] for i in items] == ["msg", "msg", "fc_", "fc_", "fco", "fco"]
    messages = chat_messages(body.instructions, items)
    assert messages == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather ?"},
        {"role": "assistant", "content": "Checking.", "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}},
            {"id": "call_2", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Rome"}'}},
        ]},
        {"role": "tool", "tool_call_id": "call_1", "content": "Sunny", "name": "get_weather"},
        {"role": "tool", "tool_call_id": "call_2", "content": "Rain", "name": "get_weather"},
    ]


def test_tools_choice_and_format_take_their_chat_forms() -> None:
    schema = {"type": "object", "properties": {"b": {"type": "string"}, "a": {"type": "integer"}}}
    body = request(input="x", max_output_tokens=7, seed=5,
                   tools=[{"type": "function", "name": "f", "parameters": {"type": "object"}, "strict": True}],
                   tool_choice={"type": "function", "name": "f"}, parallel_tool_calls=True)
    chat = chat_request(body, input_items(body))
    assert (chat.max_completion_tokens, chat.seed, chat.parallel_tool_calls) == (7, 5, True)
    assert chat.tools is not None and chat.tools[0].function.name == "f"
    assert chat.tool_choice is not None and chat.tool_choice.function.name == "f"  # type: ignore[union-attr]
    formatted = request(input="x", text={"format": {"type": "json_schema", "name": "r", "schema": schema}})
    chat = chat_request(formatted, input_items(formatted))
    assert chat.response_format is not None and chat.response_format.type == "json_schema"
    assert list(chat.response_format.json_schema.schema_["properties"]) == ["b", "a"]  # type: ignore[union-attr]
    # `auto` with no tools means what no tool_choice means (Chat Completions would refuse it).
    plain = request(input="x", tool_choice="auto")
    assert chat_request(plain, input_items(plain)).tool_choice is None


def test_chat_errors_are_renamed_into_responses_parameters() -> None:
    cases = [
        ("max_tokens is 9000; this server allows at most 4096.", "max_tokens", "max_output_tokens",
         "max_output_tokens is 9000; this server allows at most 4096."),
        ("response_format.json_schema.schema: bad", "response_format.json_schema.schema", "text.format.schema",
         "text.format.schema: bad"),
        ("tools[1].function.parameters: bad", "tools[1].function.parameters", "tools[1].parameters",
         "tools[1].parameters: bad"),
        ("messages[2].content is required", "messages[2].content", "input", "messages[2].content is required"),
    ]
    for message, param, new_param, new_message in cases:
        error = renamed(InvalidRequest(message, param=param, code="invalid_value"))
        assert (error.param, error.message, str(error)) == (new_param, new_message, new_message)


def test_truncation_drops_the_oldest_item_and_the_results_it_leaves_unanswered() -> None:
    items = [{"type": "function_call", "call_id": "c"}, {"type": "function_call_output", "call_id": "c"},
             {"type": "function_call_output", "call_id": "d"}, {"type": "message", "role": "user"}]
    assert _without_oldest(items) == items[3:]
    assert _without_oldest(items[3:] + items[3:]) == items[3:]


def test_text_then_a_call_streams_as_two_items() -> None:
    events = ResponseEvents(ResponseDraft(request(input="x")))
    out = events.start()
    for piece in [chunk(""), chunk("Let me "), chunk("check."),
                  chunk(calls=[{"index": 0, "id": "call_1", "type": "function", "function": {"name": "f",
                                                                                             "arguments": ""}}]),
                  chunk(calls=[{"index": 0, "function": {"arguments": '{"a": '}}]),
                  chunk(calls=[{"index": 0, "function": {"arguments": "1}"}}]),
                  chunk(finish="tool_calls"),
                  chunk(usage={"prompt_tokens": 3, "completion_tokens": 9, "total_tokens": 12})]:
        out += events.feed(piece)
    response, last = events.finish()
    out += last
    assert [e.sequence_number for e in out] == list(range(len(out)))
    assert [(e.type, e.output_index) for e in out] == [
        ("response.created", None), ("response.in_progress", None),
        ("response.output_item.added", 0), ("response.content_part.added", 0),
        ("response.output_text.delta", 0), ("response.output_text.delta", 0),
        ("response.output_text.done", 0), ("response.content_part.done", 0), ("response.output_item.done", 0),
        ("response.output_item.added", 1),
        ("response.function_call_arguments.delta", 1), ("response.function_call_arguments.delta", 1),
        ("response.function_call_arguments.done", 1), ("response.output_item.done", 1),
        ("response.completed", None)]
    assert out[6].text == "Let me check." and out[12].arguments == '{"a": 1}' and out[12].name == "f"
    message, call = response.output
    assert message.type == "message" and call.type == "function_call" and call.call_id == "call_1"
    assert response.usage is not None and (response.usage.input_tokens, response.usage.output_tokens) == (3, 9)
    assert out[0].response is not None and out[0].response.status == "in_progress"


def test_a_length_cut_makes_an_incomplete_response() -> None:
    events = ResponseEvents(ResponseDraft(request(input="x", max_output_tokens=2)))
    events.start()
    events.feed(chunk("Hi there"))
    events.feed(chunk(finish="length"))
    response, last = events.finish()
    assert last[-1].type == "response.incomplete" and response.status == "incomplete"
    assert response.incomplete_details is not None and response.incomplete_details.reason == "max_output_tokens"
    assert response.output[0].status == "incomplete"


def test_a_failure_is_an_error_event_then_response_failed() -> None:
    events = ResponseEvents(ResponseDraft(request(input="x")))
    events.start()
    events.feed(chunk("Hi"))
    detail = ErrorDetail(message="The server is shutting down.", type="server_error", code="server_shutdown")
    error, failed = events.failure(detail)
    wire = error.model_dump(mode="json")
    assert wire == {"type": "error", "sequence_number": 5, "code": "server_shutdown",
                    "message": "The server is shutting down.",
                    "error": {"message": "The server is shutting down.", "type": "server_error", "param": None,
                              "code": "server_shutdown"}}
    assert failed.type == "response.failed" and failed.response is not None
    assert failed.response.status == "failed" and failed.response.error is not None
    assert failed.response.error.code == "server_shutdown"
