"""Checks run by the openai 3.x client and the OpenAI Agents SDK, in their own environment
(`.venv-openai3`, see requirements-openai3.txt): tests/e2e/test_responses_openai3.py runs
`python openai3_checks.py SCENARIO` there against the session server, with OPENAI_BASE_URL and
OPENAI_API_KEY set. A failed check exits non-zero with its traceback; nothing from the project
is imported, as a user of these libraries would have nothing of it.

Scenarios: `responses` (the Responses API through openai 3.x), `agents-responses` and
`agents-chat` (an agent with one function tool, on the Responses and the Chat Completions model).
"""

from __future__ import annotations

import json
import os
import sys

import openai
from pydantic import BaseModel

MODEL = os.environ.get("MAAS_TEST_MODEL", "smollm2-135m-instruct")
ASK = "What is the capital of France?"
WEATHER = {
    "type": "function", "name": "get_weather", "description": "The current weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 30}},
                   "required": ["city"], "additionalProperties": False},
    "strict": True}


class City(BaseModel):
    name: str
    country: str


def responses() -> dict[str, object]:
    assert openai.__version__.startswith("3."), openai.__version__
    client = openai.OpenAI(max_retries=0, timeout=120)
    whole = client.responses.create(model=MODEL, input=ASK, max_output_tokens=20, temperature=0)
    assert whole.id.startswith("resp_") and whole.status == "completed" and whole.output_text
    events = list(client.responses.create(model=MODEL, input=ASK, max_output_tokens=20, temperature=0, stream=True))
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert events[0].type == "response.created" and events[-1].type == "response.completed"
    streamed = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert streamed == whole.output_text == events[-1].response.output_text
    with client.responses.stream(model=MODEL, input=ASK, max_output_tokens=20, temperature=0) as stream:
        assert stream.get_final_response().output_text == whole.output_text

    parsed = client.responses.parse(model=MODEL, input="Name a city in Japan.", text_format=City,
                                    max_output_tokens=40, temperature=0)
    assert isinstance(parsed.output_parsed, City), parsed.output_text

    first = client.responses.create(model=MODEL, input="What is the weather in Paris?", tools=[WEATHER],
                                    tool_choice="required", max_output_tokens=40, temperature=0)
    (call,) = first.output
    assert call.type == "function_call" and call.name == "get_weather" and json.loads(call.arguments)["city"]
    answer = client.responses.create(
        model=MODEL, previous_response_id=first.id, tools=[WEATHER], tool_choice="none", max_output_tokens=30,
        temperature=0, input=[{"type": "function_call_output", "call_id": call.call_id, "output": "Sunny, 21 C."}])
    assert answer.output[0].type == "message" and answer.output_text
    items = list(client.responses.input_items.list(answer.id))
    assert [(i.type, i.call_id) for i in items] == [("function_call_output", call.call_id)]

    assert client.responses.retrieve(answer.id).output_text == answer.output_text
    client.responses.delete(answer.id)
    try:
        client.responses.retrieve(answer.id)
        raise AssertionError("a deleted response was retrieved")
    except openai.NotFoundError as exc:
        assert exc.status_code == 404 and exc.body["param"] == "response_id"  # type: ignore[index]
    try:
        client.responses.create(model=MODEL, input="x", max_output_tokens=10**6)
        raise AssertionError("max_output_tokens beyond the limit was accepted")
    except openai.BadRequestError as exc:
        assert exc.body["type"] == "invalid_request_error" and exc.body["param"] == "max_output_tokens"  # type: ignore[index]
    return {"openai": openai.__version__, "text": whole.output_text, "parsed": parsed.output_parsed.model_dump()}


def agent_run(kind: str) -> dict[str, object]:
    from agents import (
        Agent,
        ModelSettings,
        OpenAIChatCompletionsModel,
        OpenAIResponsesModel,
        Runner,
        function_tool,
        set_tracing_disabled,
    )

    set_tracing_disabled(True)
    calls: list[str] = []

    @function_tool
    def get_weather(city: str) -> str:
        """The current weather in a city."""
        calls.append(city)
        return f"It is sunny and 21 degrees in {city}."

    client = openai.AsyncOpenAI(max_retries=0, timeout=120)
    model_class = OpenAIResponsesModel if kind == "responses" else OpenAIChatCompletionsModel
    # The first turn must call the tool; after it the agent leaves the choice to the model (its
    # reset_tool_choice), and what it does then is the model's decision: this seed, greedy enough
    # to be repeatable, answers after one call; max_turns bounds a model that keeps calling.
    agent = Agent(name="weather", instructions="You answer questions about the weather.", tools=[get_weather],
                  model=model_class(model=MODEL, openai_client=client),
                  model_settings=ModelSettings(tool_choice="required", temperature=0.7, max_tokens=60,
                                               extra_body={"seed": 3}))
    result = Runner.run_sync(agent, "What is the weather in Paris?", max_turns=4)
    assert calls and all(calls), calls
    assert isinstance(result.final_output, str) and result.final_output.strip(), result.final_output
    return {"calls": calls, "answer": result.final_output}


def main() -> int:
    scenario = sys.argv[1]
    checks = {"responses": responses, "agents-responses": lambda: agent_run("responses"),
              "agents-chat": lambda: agent_run("chat")}
    print(json.dumps({"scenario": scenario, **checks[scenario]()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
