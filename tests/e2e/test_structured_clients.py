"""End to end: the structured-output and tool paths of the libraries people use, unchanged,
against the real server: the official openai client, langchain-openai and instructor."""

from __future__ import annotations

import json
from typing import Any, Literal

import instructor
import jsonschema
import pytest
from langchain_core.messages import HumanMessage
from langchain_openai import ChatOpenAI
from openai import OpenAI, pydantic_function_tool
from pydantic import BaseModel, Field

from reference_server.testing import ServerProcess
from tests.constants import API_KEY, GENERATOR


class Person(BaseModel):
    name: str = Field(max_length=30)
    age: int = Field(ge=0, le=120)


class GetWeather(BaseModel):
    """The current weather in a city."""

    city: str = Field(max_length=30)
    unit: Literal["celsius", "fahrenheit"]


class Review(BaseModel):
    """Fields out of alphabetical order, as a user writes them."""

    product: str = Field(max_length=20)
    stars: int = Field(ge=1, le=5)
    mood: Literal["happy", "sad"]


WEATHER_TOOL: dict[str, Any] = {"type": "function", "function": {
    "name": "get_weather", "description": "The current weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 30},
                                                    "days": {"type": "integer", "minimum": 1, "maximum": 7}},
                   "required": ["city", "days"], "additionalProperties": False}}}
ASK_PERSON = "Invent a person: their name and age."
ASK_WEATHER = "What will the weather be in Paris for the next 3 days?"


@pytest.fixture
def openai_client(server: ServerProcess) -> OpenAI:
    return OpenAI(api_key=API_KEY, base_url=server.base_url, max_retries=0, timeout=120)


@pytest.fixture
def chat_model(server: ServerProcess) -> ChatOpenAI:
    return ChatOpenAI(model=GENERATOR, api_key=API_KEY, base_url=server.base_url,  # type: ignore[arg-type]
                      temperature=0, max_tokens=60, max_retries=0)


def test_openai_parse_returns_the_model(openai_client: OpenAI) -> None:
    completion = openai_client.chat.completions.parse(
        model=GENERATOR, messages=[{"role": "user", "content": ASK_PERSON}], response_format=Person,
        max_tokens=60, temperature=0)
    person = completion.choices[0].message.parsed
    assert isinstance(person, Person) and person.name


@pytest.mark.slow
def test_openai_parse_gets_the_fields_in_the_model_order(openai_client: OpenAI) -> None:
    completion = openai_client.chat.completions.parse(
        model=GENERATOR, messages=[{"role": "user", "content": "Review the pen you bought."}],
        response_format=Review, max_tokens=60, temperature=0)
    message = completion.choices[0].message
    assert isinstance(message.parsed, Review)
    assert list(json.loads(message.content or "")) == ["product", "stars", "mood"], message.content


@pytest.mark.slow
def test_openai_parse_with_a_pydantic_tool(openai_client: OpenAI) -> None:
    completion = openai_client.chat.completions.parse(
        model=GENERATOR, messages=[{"role": "user", "content": ASK_WEATHER}],
        tools=[pydantic_function_tool(GetWeather)], tool_choice="required", max_tokens=60, temperature=0)
    (call,) = completion.choices[0].message.tool_calls or []
    assert isinstance(call.function.parsed_arguments, GetWeather)
    assert completion.choices[0].finish_reason == "tool_calls"


@pytest.mark.slow
def test_openai_tools_and_a_tool_turn(openai_client: OpenAI) -> None:
    messages: list[Any] = [{"role": "user", "content": ASK_WEATHER}]
    first = openai_client.chat.completions.create(
        model=GENERATOR, messages=messages, tools=[WEATHER_TOOL], tool_choice="required", max_tokens=60,
        temperature=0)
    message = first.choices[0].message
    (call,) = message.tool_calls or []
    jsonschema.validate(json.loads(call.function.arguments), WEATHER_TOOL["function"]["parameters"])
    messages += [message.model_dump(exclude_none=True),
                 {"role": "tool", "tool_call_id": call.id, "content": "Sunny, 21 degrees, all three days."}]
    answer = openai_client.chat.completions.create(
        model=GENERATOR, messages=messages, tools=[WEATHER_TOOL], tool_choice="none", max_tokens=30, temperature=0)
    assert answer.choices[0].message.content and not answer.choices[0].message.tool_calls


def test_openai_streamed_tool_call(openai_client: OpenAI) -> None:
    stream = openai_client.chat.completions.create(
        model=GENERATOR, messages=[{"role": "user", "content": ASK_WEATHER}], tools=[WEATHER_TOOL],
        tool_choice={"type": "function", "function": {"name": "get_weather"}}, stream=True, max_tokens=60,
        temperature=0)
    ids, names, arguments, finish = [], [], "", None
    for chunk in stream:
        choice = chunk.choices[0]
        for delta in choice.delta.tool_calls or []:
            assert delta.index == 0
            if delta.id:
                ids.append(delta.id)
            if delta.function and delta.function.name:
                names.append(delta.function.name)
            arguments += (delta.function.arguments or "") if delta.function else ""
        finish = choice.finish_reason or finish
    assert len(ids) == 1 and names == ["get_weather"] and finish == "tool_calls"
    jsonschema.validate(json.loads(arguments), WEATHER_TOOL["function"]["parameters"])


@pytest.mark.slow
def test_openai_stream_helper_accumulates_the_call(openai_client: OpenAI) -> None:
    with openai_client.chat.completions.stream(
        model=GENERATOR, messages=[{"role": "user", "content": ASK_WEATHER}],
        tools=[pydantic_function_tool(GetWeather)], tool_choice="required", max_tokens=60, temperature=0,
    ) as stream:
        final = stream.get_final_completion()
    (call,) = final.choices[0].message.tool_calls or []
    assert isinstance(call.function.parsed_arguments, GetWeather)


@pytest.mark.slow
def test_required_tool_choice_always_yields_a_valid_call(openai_client: OpenAI) -> None:
    cities = ["Paris", "Tokyo", "Lima", "Oslo", "Cairo", "Perth", "Quito", "Rome", "Seoul", "Dakar"]
    for i, city in enumerate(cities):
        completion = openai_client.chat.completions.create(
            model=GENERATOR, messages=[{"role": "user", "content": f"Weather in {city}?"}], tools=[WEATHER_TOOL],
            tool_choice="required", max_tokens=60, temperature=1.0, seed=i)
        assert completion.choices[0].finish_reason == "tool_calls"
        (call,) = completion.choices[0].message.tool_calls or []
        assert call.function.name == "get_weather"
        jsonschema.validate(json.loads(call.function.arguments), WEATHER_TOOL["function"]["parameters"])


@pytest.mark.slow
@pytest.mark.parametrize("method", ["json_schema", "json_mode", "function_calling"])
def test_langchain_with_structured_output(chat_model: ChatOpenAI, method: str) -> None:
    structured = chat_model.with_structured_output(Person, method=method)  # type: ignore[arg-type]
    prompt = ASK_PERSON
    if method == "json_mode":  # langchain's json_mode sends no schema: the prompt must give the keys
        prompt += ' Answer in JSON with the keys "name" (a string) and "age" (an integer).'
    person = structured.invoke([HumanMessage(prompt)])
    assert isinstance(person, Person)


@pytest.mark.slow
def test_langchain_bind_tools(chat_model: ChatOpenAI) -> None:
    bound = chat_model.bind_tools([GetWeather], tool_choice="required")
    reply = bound.invoke([HumanMessage(ASK_WEATHER)])
    (call,) = reply.tool_calls  # type: ignore[attr-defined]
    assert call["name"] == "GetWeather"
    GetWeather.model_validate(call["args"])


@pytest.mark.slow
@pytest.mark.parametrize("mode", [instructor.Mode.TOOLS, instructor.Mode.JSON_SCHEMA], ids=["tools", "json_schema"])
def test_instructor(openai_client: OpenAI, mode: instructor.Mode) -> None:
    patched = instructor.from_openai(openai_client, mode=mode)
    person = patched.chat.completions.create(
        model=GENERATOR, response_model=Person, messages=[{"role": "user", "content": ASK_PERSON}],
        max_tokens=60, temperature=0, max_retries=0)
    assert isinstance(person, Person)
