"""End to end through the SDK: `response_format=Model` with `.parsed`, tools from dicts, models
and functions, typed tool calls (whole and streamed), and `run_tools`, sync and async."""

from __future__ import annotations

import json
from typing import Literal

import jsonschema
import pytest
from pydantic import BaseModel, Field

from maas_sdk import AsyncMaaS, MaaS, ParsedChatCompletion, ToolCall, ToolCallDelta
from tests.constants import GENERATOR


class City(BaseModel):
    name: str = Field(max_length=30)
    country: str = Field(max_length=30)
    population_millions: float = Field(ge=0, le=50)


class Weather(BaseModel):
    """The current weather in a city."""

    city: str = Field(max_length=30)
    unit: Literal["celsius", "fahrenheit"]


WEATHER_DICT = {"type": "function", "function": {
    "name": "get_weather", "description": "The current weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 30}},
                   "required": ["city"], "additionalProperties": False}}}
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]


def test_response_format_model_gives_a_parsed_instance(client: MaaS) -> None:
    reply = client.chat([{"role": "user", "content": "Tell me about Paris."}], model=GENERATOR,
                        response_format=City, max_tokens=60, temperature=0)
    assert isinstance(reply, ParsedChatCompletion)
    assert isinstance(reply.parsed, City)
    assert reply.parsed == City.model_validate_json(reply.text)


@pytest.mark.slow
async def test_async_response_format_model(async_client: AsyncMaaS) -> None:
    reply = await async_client.chat([{"role": "user", "content": "Tell me about Rome."}], model=GENERATOR,
                                    response_format=City, max_tokens=60, temperature=0.7, seed=3)
    assert isinstance(reply.parsed, City)


def test_response_format_as_a_dict_is_not_parsed(client: MaaS) -> None:
    reply = client.chat(ASK, model=GENERATOR, response_format={"type": "json_object"}, max_tokens=40, temperature=0)
    assert isinstance(json.loads(reply.text), dict)
    assert not hasattr(reply, "parsed") or reply.parsed is None  # type: ignore[attr-defined]


@pytest.mark.slow
@pytest.mark.parametrize("tool", [WEATHER_DICT, Weather], ids=["dict", "model"])
def test_required_tool_call_is_typed_and_valid(client: MaaS, tool: object) -> None:
    reply = client.chat(ASK, model=GENERATOR, tools=[tool], tool_choice="required",  # type: ignore[list-item]
                        max_tokens=60, temperature=0)
    assert reply.finish_reason == "tool_calls"
    (call,) = reply.choices[0].message.tool_calls or []
    assert isinstance(call, ToolCall) and call.id.startswith("call_")
    schema = WEATHER_DICT["function"]["parameters"] if isinstance(tool, dict) else Weather.model_json_schema()
    jsonschema.validate(json.loads(call.function.arguments), schema)  # type: ignore[arg-type]


def get_weather(city: str, unit: Literal["celsius", "fahrenheit"] = "celsius") -> str:
    """The current weather in a city."""
    return f"Sunny and 21 degrees {unit} in {city}."


@pytest.mark.slow
def test_streamed_tool_call_deltas_are_typed(client: MaaS) -> None:
    deltas: list[ToolCallDelta] = []
    finish = None
    with client.chat(ASK, model=GENERATOR, tools=[get_weather], tool_choice={"type": "function", "function": {
            "name": "get_weather"}}, stream=True, max_tokens=60, temperature=0) as stream:
        for chunk in stream:
            if chunk.choices:
                deltas += chunk.choices[0].delta.tool_calls or []
                finish = chunk.finish_reason or finish
    assert finish == "tool_calls"
    assert deltas[0].id and deltas[0].function and deltas[0].function.name == "get_weather"
    arguments = "".join(d.function.arguments or "" for d in deltas if d.function)
    assert json.loads(arguments)["city"]
    assert {d.index for d in deltas} == {0}


@pytest.mark.slow
def test_run_tools_calls_the_function_until_the_model_answers(client: MaaS) -> None:
    seen: list[str] = []

    def weather(city: str) -> str:
        """The current weather in a city."""
        seen.append(city)
        return f"Sunny and 21 degrees in {city}."

    # The first request must call; later ones leave it to the model (seeded, so the run is repeatable).
    reply = client.run_tools(ASK, tools=[weather], model=GENERATOR, tool_choice="required", max_tokens=60,
                             temperature=0.7, seed=1, max_rounds=4)
    assert seen and all(isinstance(c, str) and c for c in seen)
    assert reply.finish_reason == "stop" and reply.text
    assert not reply.choices[0].message.tool_calls


@pytest.mark.slow
async def test_async_run_tools_awaits_async_functions(async_client: AsyncMaaS) -> None:
    seen: list[str] = []

    async def weather(city: str) -> dict[str, object]:
        """The current weather in a city."""
        seen.append(city)
        return {"city": city, "sky": "sunny", "celsius": 21}

    reply = await async_client.run_tools(ASK, tools=[weather], model=GENERATOR, tool_choice="required",
                                         max_tokens=60, temperature=0.7, seed=1, max_rounds=4)
    assert seen
    assert reply.text and not reply.choices[0].message.tool_calls
