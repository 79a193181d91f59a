"""This SDK's `client.responses` against the real server, sync and async: created, streamed,
parsed, a Python function as a tool with its call's output sent back, a continued conversation,
the stored response's input items page by page, and typed errors. Greedy requests: where a
check reads what the model decided, it compares with the same request another way."""

from __future__ import annotations

import json

import pytest
from pydantic import BaseModel

from maas_sdk import AsyncMaaS, BadRequestError, MaaS, NotFoundError, OutputFunctionCall, ParsedResponse
from tests.constants import GENERATOR

ASK = "What is the capital of France?"


class City(BaseModel):
    name: str
    country: str


def get_weather(city: str) -> str:
    """The current weather in a city."""
    return f"Sunny and 21 degrees in {city}."


def test_create_stream_and_parse(client: MaaS) -> None:
    response = client.responses.create(model=GENERATOR, input=ASK, max_output_tokens=16, temperature=0)
    assert response.status in ("completed", "incomplete") and response.output_text
    with client.responses.stream(model=GENERATOR, input=ASK, max_output_tokens=16, temperature=0,
                                 store=False) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_response()
    assert "".join(pieces) == final.output_text == response.output_text
    assert final.usage is not None and response.usage is not None
    assert final.usage.output_tokens == response.usage.output_tokens
    parsed = client.responses.parse(model=GENERATOR, input="Name a city in Japan.", text_format=City,
                                    max_output_tokens=40, temperature=0)
    assert isinstance(parsed, ParsedResponse) and isinstance(parsed.parsed, City)
    assert parsed.parsed == City.model_validate_json(parsed.output_text)


@pytest.mark.slow
def test_a_python_function_as_a_tool(client: MaaS) -> None:
    first = client.responses.create(model=GENERATOR, input="What is the weather in Paris?", tools=[get_weather],
                                    tool_choice="required", max_output_tokens=40, temperature=0)
    (call,) = first.function_calls
    assert isinstance(call, OutputFunctionCall) and call.name == "get_weather"
    result = get_weather(**json.loads(call.arguments))
    answer = client.responses.create(
        model=GENERATOR, tools=[get_weather], tool_choice="none", max_output_tokens=30, temperature=0,
        input=[{"role": "user", "content": "What is the weather in Paris?"}, call,
               {"type": "function_call_output", "call_id": call.call_id, "output": result}])
    assert answer.output_text and not answer.function_calls


def test_a_continued_conversation_and_its_input_items(client: MaaS) -> None:
    first = client.responses.create(model=GENERATOR, input=ASK, max_output_tokens=16, temperature=0)
    turns = [{"role": "user", "content": f"Remember the number {n}."} for n in range(5)]
    second = client.responses.create(model=GENERATOR, input=turns, previous_response_id=first.id,
                                     max_output_tokens=8, temperature=0)
    page = client.responses.input_items(second.id, limit=2, order="asc")
    assert len(page.data) == 2 and page.has_more
    assert [item.content[0]["text"] for item in page] == [t["content"] for t in turns]  # type: ignore[index]
    newest = client.responses.input_items(second.id)
    assert [item.id for item in newest] == [item.id for item in page][::-1]
    assert client.responses.retrieve(second.id).previous_response_id == first.id
    assert client.responses.delete(second.id).deleted
    with pytest.raises(NotFoundError) as missing:
        client.responses.input_items(second.id)
    assert missing.value.param == "response_id"


def test_errors_are_typed(client: MaaS) -> None:
    with pytest.raises(BadRequestError) as raised:
        client.responses.create(model=GENERATOR, input="x", tools=[{"type": "web_search"}])
    assert (raised.value.param, raised.value.code) == ("tools[0].type", "unsupported_tool")
    with pytest.raises(BadRequestError) as raised:
        client.responses.create(model=GENERATOR, input="x", previous_response_id="resp_unknown")
    assert raised.value.param == "previous_response_id"


@pytest.mark.slow
async def test_the_async_client(async_client: AsyncMaaS) -> None:
    response = await async_client.responses.create(model=GENERATOR, input=ASK, max_output_tokens=16, temperature=0)
    async with await async_client.responses.stream(model=GENERATOR, input=ASK, max_output_tokens=16,
                                                   temperature=0) as stream:
        text = "".join([piece async for piece in stream.text_stream])
        final = await stream.get_final_response()
    assert text == response.output_text == final.output_text
    parsed = await async_client.responses.parse(model=GENERATOR, input="Name a city in Japan.", text_format=City,
                                                max_output_tokens=40, temperature=0)
    assert isinstance(parsed.parsed, City)
    items = [item async for item in async_client.responses.input_items(final.id)]
    assert [item.type for item in items] == ["message"]
    assert (await async_client.responses.retrieve(final.id)).output_text == text
    assert (await async_client.responses.delete(final.id)).deleted
