"""The official openai client (the 2.x that langchain pins, in the project's environment) on the
Responses API of the real server: created, streamed, parsed into a pydantic model, a function
tool round trip, `previous_response_id`, stored responses, and errors shaped as OpenAI's.

The Responses route translates onto Chat Completions, so the same greedy request through either
API must give the same text: most checks compare the two rather than trust what the model says.
Where a check depends on what the model decides, it says so; those runs are greedy (or seeded)
and so repeatable."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import jsonschema
import openai
import pytest
from pydantic import BaseModel

from reference_server.testing import ServerProcess
from tests.constants import API_KEY, GENERATOR

ASK = "What is the capital of France?"
WEATHER: dict[str, Any] = {
    "type": "function", "name": "get_weather", "description": "The current weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 30}},
                   "required": ["city"], "additionalProperties": False},
    "strict": True}


class City(BaseModel):
    name: str
    country: str


@pytest.fixture(scope="module")
def oai(server: ServerProcess) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(api_key=API_KEY, base_url=server.base_url, max_retries=0, timeout=120) as client:
        yield client


def chat_text(oai: openai.OpenAI, messages: list[dict[str, Any]], max_tokens: int) -> str:
    reply = oai.chat.completions.create(model=GENERATOR, messages=messages,  # type: ignore[arg-type]
                                        max_tokens=max_tokens, temperature=0)
    return reply.choices[0].message.content or ""


def test_create_is_chat_completions_in_the_responses_shape(oai: openai.OpenAI) -> None:
    response = oai.responses.create(model=GENERATOR, input=ASK, instructions="Answer in one sentence.",
                                    max_output_tokens=20, temperature=0, metadata={"run": "e2e"})
    assert response.id.startswith("resp_") and response.object == "response" and response.status == "completed"
    (message,) = response.output
    assert message.type == "message" and message.role == "assistant" and message.id.startswith("msg_")
    assert response.output_text == chat_text(
        oai, [{"role": "system", "content": "Answer in one sentence."}, {"role": "user", "content": ASK}], 20)
    assert "Paris" in response.output_text  # what the model answers, greedily
    usage = response.usage
    assert usage is not None and 0 < usage.output_tokens <= 20
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens
    assert usage.input_tokens_details.cached_tokens == 0 and usage.output_tokens_details.reasoning_tokens == 0
    assert (response.instructions, response.max_output_tokens, response.metadata, response.model) == (
        "Answer in one sentence.", 20, {"run": "e2e"}, GENERATOR)


def test_max_output_tokens_makes_it_incomplete(oai: openai.OpenAI) -> None:
    response = oai.responses.create(model=GENERATOR, input="Tell me a long story.", max_output_tokens=3,
                                    temperature=0)
    assert response.status == "incomplete" and response.incomplete_details is not None
    assert response.incomplete_details.reason == "max_output_tokens"
    assert response.output[0].status == "incomplete" and response.usage and response.usage.output_tokens == 3


def test_streamed_events_add_up_to_the_response(oai: openai.OpenAI) -> None:
    whole = oai.responses.create(model=GENERATOR, input=ASK, max_output_tokens=12, temperature=0)
    events = list(oai.responses.create(model=GENERATOR, input=ASK, max_output_tokens=12, temperature=0, stream=True))
    assert [e.sequence_number for e in events] == list(range(len(events)))
    kinds = [e.type for e in events]
    assert kinds[:4] == ["response.created", "response.in_progress", "response.output_item.added",
                         "response.content_part.added"]
    assert kinds[-4:] == ["response.output_text.done", "response.content_part.done", "response.output_item.done",
                          "response.completed"]
    assert set(kinds[4:-4]) == {"response.output_text.delta"}
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")  # type: ignore[union-attr]
    final = events[-1].response  # type: ignore[union-attr]
    assert text == final.output_text == whole.output_text
    assert events[-4].text == text  # type: ignore[union-attr]
    assert final.usage is not None and final.usage.output_tokens == whole.usage.output_tokens  # type: ignore[union-attr]
    assert oai.responses.retrieve(final.id).output_text == text


def test_the_stream_helper_and_the_wire_format(oai: openai.OpenAI, server: ServerProcess) -> None:
    # The client's helper finds its final response in `response.completed` only: the answer must end.
    with oai.responses.stream(model=GENERATOR, input=ASK, max_output_tokens=30, temperature=0) as stream:
        final = stream.get_final_response()
    assert final.status == "completed" and final.output_text
    body = {"model": GENERATOR, "input": ASK, "max_output_tokens": 4, "temperature": 0, "stream": True,
            "store": False}
    with httpx.stream("POST", f"{server.base_url}/responses", json=body, timeout=120,
                      headers={"authorization": f"Bearer {API_KEY}"}) as reply:
        lines = [line for line in reply.iter_lines() if line and not line.startswith(":")]
    names = [line.removeprefix("event: ") for line in lines if line.startswith("event: ")]
    payloads = [json.loads(line.removeprefix("data: ")) for line in lines if line.startswith("data: ")]
    assert names == [p["type"] for p in payloads] and names[-1] == "response.incomplete"  # no [DONE]
    assert len(lines) == 2 * len(payloads)


@pytest.mark.slow
def test_parse_gives_the_pydantic_model(oai: openai.OpenAI) -> None:
    parsed = oai.responses.parse(model=GENERATOR, input="Name a city in Japan.", text_format=City,
                                 max_output_tokens=40, temperature=0)
    assert isinstance(parsed.output_parsed, City) and parsed.output_parsed.name
    assert set(json.loads(parsed.output_text)) == {"name", "country"}
    assert parsed.text is not None and parsed.text.format.type == "json_schema"  # type: ignore[union-attr]


@pytest.mark.slow
def test_a_function_tool_round_trip(oai: openai.OpenAI) -> None:
    first = oai.responses.create(model=GENERATOR, input="What is the weather in Paris?", tools=[WEATHER],  # type: ignore[list-item]
                                 tool_choice="required", max_output_tokens=40, temperature=0)
    (call,) = first.output
    assert call.type == "function_call" and call.name == "get_weather" and call.call_id.startswith("call_")
    jsonschema.validate(json.loads(call.arguments), WEATHER["parameters"])
    result = {"type": "function_call_output", "call_id": call.call_id, "output": "Sunny, 21 degrees."}
    # The whole conversation sent back, the model's items as the client got them ...
    resent = oai.responses.create(
        model=GENERATOR, input=[{"role": "user", "content": "What is the weather in Paris?"}, call, result],  # type: ignore[list-item]
        tools=[WEATHER], tool_choice="none", max_output_tokens=30, temperature=0)  # type: ignore[list-item]
    # ... or only the result, continuing the stored response: the same conversation, the same answer.
    continued = oai.responses.create(model=GENERATOR, previous_response_id=first.id, input=[result],  # type: ignore[list-item]
                                     tools=[WEATHER], tool_choice="none", max_output_tokens=30, temperature=0)  # type: ignore[list-item]
    assert resent.output[0].type == "message" and resent.output_text
    assert continued.output_text == resent.output_text
    assert continued.usage and resent.usage and continued.usage.input_tokens == resent.usage.input_tokens


def test_a_named_function_is_called_in_a_stream(oai: openai.OpenAI) -> None:
    events = list(oai.responses.create(
        model=GENERATOR, input="What is the weather in Paris?", tools=[WEATHER],  # type: ignore[list-item]
        tool_choice={"type": "function", "name": "get_weather"}, max_output_tokens=40, temperature=0, stream=True))
    kinds = [e.type for e in events]
    assert kinds[2] == "response.output_item.added" and events[2].item.type == "function_call"  # type: ignore[union-attr]
    deltas = "".join(e.delta for e in events if e.type == "response.function_call_arguments.delta")  # type: ignore[union-attr]
    done = next(e for e in events if e.type == "response.function_call_arguments.done")
    assert done.arguments == deltas and json.loads(deltas)["city"]  # type: ignore[union-attr]
    assert kinds[-1] == "response.completed" and events[-1].response.output[0].arguments == deltas  # type: ignore[union-attr]


def test_previous_response_id_continues_the_stored_conversation(oai: openai.OpenAI) -> None:
    first = oai.responses.create(model=GENERATOR, input=ASK, instructions="Be brief.", max_output_tokens=20,
                                 temperature=0)
    second = oai.responses.create(model=GENERATOR, input="And of Germany?", previous_response_id=first.id,
                                  max_output_tokens=20, temperature=0)
    # OpenAI's rule: the earlier input and output carry over, the earlier instructions do not.
    assert second.output_text == chat_text(oai, [
        {"role": "user", "content": ASK}, {"role": "assistant", "content": first.output_text},
        {"role": "user", "content": "And of Germany?"}], 20)
    assert second.previous_response_id == first.id
    items = list(oai.responses.input_items.list(second.id))
    assert [(i.type, i.role, i.content[0].text) for i in items] == [  # type: ignore[union-attr]
        ("message", "user", "And of Germany?")]


def test_retrieve_delete_and_store_false(oai: openai.OpenAI) -> None:
    kept = oai.responses.create(model=GENERATOR, input=ASK, max_output_tokens=5, temperature=0)
    assert oai.responses.retrieve(kept.id).model_dump() == kept.model_dump()
    oai.responses.delete(kept.id)
    with pytest.raises(openai.NotFoundError):
        oai.responses.retrieve(kept.id)
    unstored = oai.responses.create(model=GENERATOR, input=ASK, max_output_tokens=5, temperature=0, store=False)
    assert unstored.store is False
    with pytest.raises(openai.NotFoundError):
        oai.responses.retrieve(unstored.id)
    with pytest.raises(openai.BadRequestError) as raised:
        oai.responses.create(model=GENERATOR, input="x", previous_response_id=unstored.id)
    assert raised.value.body["param"] == "previous_response_id"  # type: ignore[index]


@pytest.mark.slow
def test_seeded_sampling_repeats(oai: openai.OpenAI) -> None:
    def sample(seed: int) -> str:
        return oai.responses.create(model=GENERATOR, input="Write a word.", max_output_tokens=12, temperature=1.0,
                                    store=False, extra_body={"seed": seed}).output_text

    assert sample(7) == sample(7)


def test_ignored_parameters_are_named(oai: openai.OpenAI) -> None:
    raw = oai.responses.with_raw_response.create(
        model=GENERATOR, input=ASK, max_output_tokens=3, temperature=0, store=False, reasoning={"effort": "low"},
        service_tier="auto", user="someone", include=["reasoning.encrypted_content"], top_logprobs=2)
    assert set(raw.headers["x-maas-ignored-params"].split(",")) == {
        "include", "reasoning", "service_tier", "user", "top_logprobs"}
    response = raw.parse()
    assert response.user == "someone" and response.output[0].content[0].logprobs == []  # type: ignore[union-attr]


def test_logprobs_of_the_output_text(oai: openai.OpenAI) -> None:
    asked: dict[str, Any] = {"model": GENERATOR, "input": ASK, "max_output_tokens": 6, "temperature": 0,
                             "store": False, "include": ["message.output_text.logprobs"], "top_logprobs": 2}
    response = oai.responses.create(**asked)
    part = response.output[0].content[0]  # type: ignore[union-attr]
    assert part.logprobs and "".join(lp.token for lp in part.logprobs) == part.text
    for lp in part.logprobs:
        assert len(lp.top_logprobs) == 2 and lp.logprob == max(top.logprob for top in lp.top_logprobs)  # greedy
    events = list(oai.responses.create(**asked, stream=True))
    streamed = [lp for e in events if e.type == "response.output_text.delta" for lp in e.logprobs]  # type: ignore[union-attr]
    assert [(lp.token, round(lp.logprob, 4)) for lp in streamed] == [
        (lp.token, round(lp.logprob, 4)) for lp in part.logprobs]


def test_errors_look_like_openai(oai: openai.OpenAI, server: ServerProcess) -> None:
    cases: list[tuple[type[openai.APIStatusError], dict[str, Any], str | None]] = [
        (openai.BadRequestError, {"max_output_tokens": 100_000}, "max_output_tokens"),
        (openai.BadRequestError, {"tools": [{"type": "web_search_preview"}]}, "tools[0].type"),
        (openai.BadRequestError, {"text": {"format": {"type": "json_schema", "name": "x",
                                                      "schema": {"type": "object", "minProperties": "one"}}}},
         "text.format.schema"),
        (openai.NotFoundError, {"model": "no-such-model"}, "model"),
        # Longer than the model's context, and `truncation` left at "disabled": refused, not cut.
        (openai.BadRequestError, {"input": "apple banana cherry " * 3000}, "input"),
    ]
    for kind, params, param in cases:
        with pytest.raises(kind) as raised:
            oai.responses.create(**{"model": GENERATOR, "input": "x", **params})
        body = raised.value.body
        assert isinstance(body, dict) and body["param"] == param and body["message"], body
        assert body["type"] == ("not_found_error" if kind is openai.NotFoundError else "invalid_request_error")
    with pytest.raises(openai.NotFoundError) as missing:
        oai.responses.retrieve("resp_" + "0" * 48)
    assert missing.value.status_code == 404 and "not found" in missing.value.message
    with (openai.OpenAI(api_key="sk-wrong", base_url=server.base_url, max_retries=0) as stranger,
          pytest.raises(openai.AuthenticationError)):
        stranger.responses.create(model=GENERATOR, input="x")


async def test_the_async_client(server: ServerProcess) -> None:
    async with openai.AsyncOpenAI(api_key=API_KEY, base_url=server.base_url, max_retries=0, timeout=120) as client:
        response = await client.responses.create(model=GENERATOR, input=ASK, max_output_tokens=12, temperature=0)
        stream = await client.responses.create(model=GENERATOR, input=ASK, max_output_tokens=12, temperature=0,
                                               stream=True)
        text = "".join([e.delta async for e in stream if e.type == "response.output_text.delta"])  # type: ignore[union-attr]
    assert text == response.output_text


@pytest.mark.slow
def test_truncation_auto_drops_the_oldest_items(oai: openai.OpenAI) -> None:
    long_ago = {"role": "user", "content": "apple banana cherry " * 3000}  # more than the context alone
    asked = {"role": "user", "content": ASK}
    cut = oai.responses.create(model=GENERATOR, input=[long_ago, asked], truncation="auto",  # type: ignore[list-item]
                               max_output_tokens=8, temperature=0)
    alone = oai.responses.create(model=GENERATOR, input=[asked], max_output_tokens=8, temperature=0, store=False)  # type: ignore[list-item]
    assert cut.truncation == "auto" and cut.output_text == alone.output_text
    assert cut.usage is not None and alone.usage is not None and cut.usage.input_tokens == alone.usage.input_tokens
    assert len(list(oai.responses.input_items.list(cut.id))) == 2  # what was sent, not what fitted
    with pytest.raises(openai.BadRequestError) as raised:
        oai.responses.create(model=GENERATOR, input=[long_ago, asked], max_output_tokens=8)  # type: ignore[list-item]
    assert raised.value.body["code"] == "context_length_exceeded"  # type: ignore[index]
