"""End to end: the official `anthropic` client, unchanged, against the real server's Messages
API: create, stream (text and the final message), a tool use round trip, count_tokens, the
async client, and errors raised as the client raises Anthropic's own.

Sampling is greedy (`temperature` 0; this client passes sampling fields through `extra_body`),
so each reply is the same on every run; checks on what the 135M model writes say so.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import jsonschema
import pytest
from anthropic.types import TextBlock, ToolUseBlock
from pydantic import BaseModel

from reference_server.testing import ServerProcess
from tests.constants import API_KEY, GENERATOR

GREEDY: dict[str, Any] = {"temperature": 0}
ASK = [{"role": "user", "content": "What is the capital of France?"}]
WEATHER_SCHEMA = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 30}},
                  "required": ["city"], "additionalProperties": False}
WEATHER_TOOL: dict[str, Any] = {"name": "get_weather", "description": "The current weather in a city.",
                                "input_schema": WEATHER_SCHEMA}
ASK_WEATHER = [{"role": "user", "content": "What is the weather in Paris?"}]


@pytest.fixture
def claude(server: ServerProcess) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(api_key=API_KEY, base_url=server.url, max_retries=0, timeout=120) as client:
        yield client


def test_create_answers_with_an_anthropic_message(claude: anthropic.Anthropic) -> None:
    reply = claude.messages.create(model=GENERATOR, max_tokens=20, messages=ASK, extra_body=GREEDY)
    assert reply.id.startswith("msg_") and reply.type == "message" and reply.role == "assistant"
    assert reply.model == GENERATOR and reply.stop_reason == "end_turn" and reply.stop_sequence is None
    (block,) = reply.content
    assert isinstance(block, TextBlock) and "Paris" in block.text  # what the model knows, greedily
    assert 0 < reply.usage.output_tokens < 20
    assert reply.usage.input_tokens == claude.messages.count_tokens(model=GENERATOR, messages=ASK).input_tokens
    assert reply._request_id and reply._request_id.startswith("req_")


def test_fields_without_effect_are_named_in_a_header(claude: anthropic.Anthropic) -> None:
    raw = claude.messages.with_raw_response.create(
        model=GENERATOR, max_tokens=2, messages=ASK, metadata={"user_id": "user-1"}, service_tier="auto",
        thinking={"type": "disabled"}, extra_headers={"anthropic-beta": "some-beta-2025-01-01"})
    assert raw.headers["x-maas-ignored-params"] == "thinking,metadata,service_tier"
    assert raw.headers["request-id"] == raw.headers["x-request-id"] and raw.parse().content


def test_max_tokens_and_stop_sequences_end_the_reply(claude: anthropic.Anthropic) -> None:
    cut = claude.messages.create(model=GENERATOR, max_tokens=3, messages=ASK, extra_body=GREEDY)
    assert cut.stop_reason == "max_tokens" and cut.usage.output_tokens == 3
    # Greedily the answer is "The capital of France is Paris.": the stop sequence is met.
    stopped = claude.messages.create(model=GENERATOR, max_tokens=20, messages=ASK, stop_sequences=["Paris", "Rome"],
                                     extra_body=GREEDY)
    assert stopped.stop_reason == "stop_sequence" and stopped.stop_sequence == "Paris"
    assert isinstance(stopped.content[0], TextBlock) and "Paris" not in stopped.content[0].text


def test_system_and_a_conversation(claude: anthropic.Anthropic) -> None:
    reply = claude.messages.create(
        model=GENERATOR, max_tokens=20, extra_body=GREEDY,
        system=[{"type": "text", "text": "You answer in one short sentence."}],
        messages=[*ASK, {"role": "assistant", "content": "Paris."},
                  {"role": "user", "content": [{"type": "text", "text": "And of Italy?"}]}])
    assert reply.stop_reason in ("end_turn", "max_tokens") and reply.content and reply.usage.input_tokens > 30


def test_stream_text_and_final_message(claude: anthropic.Anthropic) -> None:
    whole = claude.messages.create(model=GENERATOR, max_tokens=20, messages=ASK, extra_body=GREEDY)
    with claude.messages.stream(model=GENERATOR, max_tokens=20, messages=ASK, extra_body=GREEDY) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert len(pieces) > 1 and "".join(pieces) == final.content[0].text == whole.content[0].text  # type: ignore[union-attr]
    assert final.stop_reason == "end_turn" and final.usage.output_tokens == whole.usage.output_tokens
    assert final.id.startswith("msg_")


def test_raw_stream_events_come_in_anthropics_order(claude: anthropic.Anthropic) -> None:
    events = list(claude.messages.create(model=GENERATOR, max_tokens=5, messages=ASK, stream=True, extra_body=GREEDY))
    kinds = [e.type for e in events]
    assert kinds[:2] == ["message_start", "content_block_start"] and kinds[-3:] == [
        "content_block_stop", "message_delta", "message_stop"]
    assert set(kinds[2:-3]) == {"content_block_delta"}
    assert events[-2].delta.stop_reason == "max_tokens" and events[-2].usage.output_tokens == 5  # type: ignore[union-attr]


def test_the_wire_names_each_event_and_pings(server: ServerProcess) -> None:
    body = {"model": GENERATOR, "max_tokens": 3, "messages": ASK, "stream": True, "temperature": 0}
    with httpx.stream("POST", f"{server.url}/v1/messages", json=body, timeout=60,
                      headers={"x-api-key": API_KEY, "anthropic-version": "2023-06-01"}) as reply:
        assert reply.headers["content-type"].startswith("text/event-stream")
        frames = [f for f in reply.read().decode().split("\n\n") if f]
    names = []
    for frame in frames:
        event_line, data_line = frame.split("\n")
        name = event_line.removeprefix("event: ")
        assert json.loads(data_line.removeprefix("data: "))["type"] == name
        names.append(name)
    assert names[:2] == ["message_start", "ping"] and names[-1] == "message_stop" and "[DONE]" not in str(frames)


@pytest.mark.slow  # compiles a grammar and generates a few dozen tokens
def test_tool_use_round_trip(claude: anthropic.Anthropic) -> None:
    first = claude.messages.create(model=GENERATOR, max_tokens=60, messages=ASK_WEATHER, tools=[WEATHER_TOOL],
                                   tool_choice={"type": "any"}, extra_body=GREEDY)
    assert first.stop_reason == "tool_use"
    (call,) = [b for b in first.content if isinstance(b, ToolUseBlock)]
    assert call.id.startswith("toolu_") and call.name == "get_weather"
    jsonschema.validate(call.input, WEATHER_SCHEMA)  # enforced while decoding
    result = {"type": "tool_result", "tool_use_id": call.id, "content": "Sunny, 21 degrees."}
    answer = claude.messages.create(
        model=GENERATOR, max_tokens=40, tools=[WEATHER_TOOL], tool_choice={"type": "none"}, extra_body=GREEDY,
        messages=[*ASK_WEATHER, {"role": "assistant", "content": first.content}, {"role": "user", "content": [result]}])
    assert answer.stop_reason in ("end_turn", "max_tokens")
    assert not [b for b in answer.content if isinstance(b, ToolUseBlock)]
    # What the model makes of the result is its own; greedily it repeats the temperature.
    assert "21" in answer.content[0].text  # type: ignore[union-attr]


@pytest.mark.slow  # compiles a grammar and generates a few dozen tokens
def test_a_named_tool_streams_its_input(claude: anthropic.Anthropic) -> None:
    with claude.messages.stream(model=GENERATOR, max_tokens=60, messages=ASK_WEATHER, tools=[WEATHER_TOOL],
                                tool_choice={"type": "tool", "name": "get_weather"}, extra_body=GREEDY) as stream:
        kinds = {event.type for event in stream}
        final = stream.get_final_message()
    assert "input_json" in kinds  # the client assembled the input from input_json_delta events
    (call,) = final.content
    assert isinstance(call, ToolUseBlock) and call.name == "get_weather" and final.stop_reason == "tool_use"
    jsonschema.validate(call.input, WEATHER_SCHEMA)


class City(BaseModel):
    name: str
    country: str


@pytest.mark.slow  # compiles a grammar and generates a few dozen tokens
def test_output_format_is_enforced_and_keeps_the_schema_order(claude: anthropic.Anthropic) -> None:
    reply = claude.messages.parse(model=GENERATOR, max_tokens=40, output_format=City, extra_body=GREEDY,
                                  messages=[{"role": "user", "content": "Name a city in France."}])
    assert isinstance(reply.parsed_output, City)
    assert list(json.loads(reply.content[0].text)) == ["name", "country"]  # type: ignore[union-attr]


def test_count_tokens_counts_the_tools_too(claude: anthropic.Anthropic) -> None:
    plain = claude.messages.count_tokens(model=GENERATOR, messages=ASK_WEATHER).input_tokens
    with_tools = claude.messages.count_tokens(model=GENERATOR, messages=ASK_WEATHER, tools=[WEATHER_TOOL]).input_tokens
    assert 0 < plain < with_tools


async def test_the_async_client(server: ServerProcess) -> None:
    async with anthropic.AsyncAnthropic(api_key=API_KEY, base_url=server.url, max_retries=0, timeout=120) as claude:
        reply = await claude.messages.create(model=GENERATOR, max_tokens=20, messages=ASK, extra_body=GREEDY)
        async with claude.messages.stream(model=GENERATOR, max_tokens=20, messages=ASK, extra_body=GREEDY) as stream:
            text = "".join([piece async for piece in stream.text_stream])
            final = await stream.get_final_message()
        count = await claude.messages.count_tokens(model=GENERATOR, messages=ASK)
    assert text == reply.content[0].text == final.content[0].text  # type: ignore[union-attr]
    assert count.input_tokens == reply.usage.input_tokens


def test_errors_are_raised_as_anthropics(claude: anthropic.Anthropic, server: ServerProcess) -> None:
    with pytest.raises(anthropic.NotFoundError) as missing:
        claude.messages.create(model="no-such-model", max_tokens=5, messages=ASK)
    assert missing.value.status_code == 404 and missing.value.type == "not_found_error"
    assert "no-such-model" in (missing.value.api_message or "")
    with pytest.raises(anthropic.BadRequestError) as unknown:
        claude.messages.create(model=GENERATOR, max_tokens=5, messages=ASK, extra_body={"top_n": 3})
    assert unknown.value.type == "invalid_request_error" and "top_n" in (unknown.value.api_message or "")
    with pytest.raises(anthropic.BadRequestError) as image:
        claude.messages.create(model=GENERATOR, max_tokens=5, messages=[{"role": "user", "content": [
            {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.png"}}]}])
    assert "messages[0].content[0]" in (image.value.api_message or "")
    with pytest.raises(anthropic.BadRequestError) as too_long:
        claude.messages.create(model=GENERATOR, max_tokens=10**6, messages=ASK)
    assert "max_tokens" in (too_long.value.api_message or "")
    with pytest.raises(anthropic.BadRequestError) as stops:
        claude.messages.create(model=GENERATOR, max_tokens=5, messages=ASK, stop_sequences=[""])
    assert "stop_sequences" in (stops.value.api_message or "")
    wrong_key = anthropic.Anthropic(api_key="sk-wrong", base_url=server.url, max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as denied:
        wrong_key.messages.create(model=GENERATOR, max_tokens=5, messages=ASK)
    assert denied.value.status_code == 401 and denied.value.type == "authentication_error"
