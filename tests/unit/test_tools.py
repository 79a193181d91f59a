"""SDK tool plumbing without a server: tool schemas from dicts, models and functions; the
tool loop's bookkeeping; `.parsed` of a completion asked for with a model."""

from __future__ import annotations

import json
from typing import Literal

import pytest
from pydantic import BaseModel, ValidationError

from maas_sdk import ParsedChatCompletion, ToolRunError
from maas_sdk._tools import ToolLoop, response_format_param, tool_param
from maas_sdk.protocol import ChatCompletion


def forecast(city: str, days: int = 1, unit: Literal["c", "f"] = "c") -> str:
    """The forecast for a city."""
    return f"{city}: sunny for {days} days ({unit})"


class Point(BaseModel):
    x: int
    y: int


def _reply(calls: list[tuple[str, str]] | None = None, content: str | None = None) -> ChatCompletion:
    tool_calls = [{"id": f"call_{i}", "type": "function", "function": {"name": n, "arguments": a}}
                  for i, (n, a) in enumerate(calls or [])]
    message = {"role": "assistant", "content": content, "tool_calls": tool_calls or None}
    return ChatCompletion.model_validate({"id": "c", "created": 0, "model": "m", "choices": [
        {"index": 0, "message": message, "finish_reason": "tool_calls" if calls else "stop"}]})


def test_a_function_becomes_a_tool_with_its_signature() -> None:
    tool = tool_param(forecast)
    function = tool["function"]
    assert (tool["type"], function["name"], function["description"]) == ("function", "forecast",
                                                                         "The forecast for a city.")
    params = function["parameters"]
    assert params["required"] == ["city"]
    assert params["properties"]["days"] == {"default": 1, "title": "Days", "type": "integer"}
    assert params["properties"]["unit"]["enum"] == ["c", "f"]
    assert params["additionalProperties"] is False


def test_models_and_dicts_as_tools() -> None:
    assert tool_param(Point)["function"]["parameters"]["required"] == ["x", "y"]
    assert "description" not in tool_param(Point)["function"]
    raw = {"type": "function", "function": {"name": "f"}}
    assert tool_param(raw) == raw
    with pytest.raises(TypeError):
        tool_param(42)  # type: ignore[arg-type]


def test_response_format_from_a_model_and_parsed() -> None:
    wire, model = response_format_param(Point)
    assert model is Point and wire["type"] == "json_schema" and wire["json_schema"]["strict"] is True
    reply = _reply(content='{"x": 1, "y": 2}').model_dump(mode="json")
    assert ParsedChatCompletion[Point].model_validate(reply).parsed == Point(x=1, y=2)
    cut = {**reply, "choices": [{**reply["choices"][0], "finish_reason": "length"}]}
    assert ParsedChatCompletion[Point].model_validate(cut).parsed is None
    bad = {**reply, "choices": [{**reply["choices"][0], "message": {"role": "assistant", "content": '{"x": 1}'}}]}
    with pytest.raises(ValidationError):
        ParsedChatCompletion[Point].model_validate(bad)


def test_tool_loop_runs_calls_and_records_results_and_errors() -> None:
    loop = ToolLoop([{"role": "user", "content": "hi"}], [forecast], max_rounds=2)
    assert loop.params({"tool_choice": "required", "max_tokens": 5}) == {"tool_choice": "required", "max_tokens": 5}
    assert loop.params({"tool_choice": "required", "max_tokens": 5}) == {"max_tokens": 5}
    pending = loop.pending(_reply([("forecast", '{"city": "Oslo", "days": 2}'), ("forecast", '{"days": 2}')]))
    for call in pending:
        loop.run(call)
    assistant, ok, invalid = loop.messages[1:]
    assert [c["id"] for c in assistant["tool_calls"]] == ["call_0", "call_1"]
    assert ok == {"role": "tool", "content": "Oslo: sunny for 2 days (c)", "tool_call_id": "call_0",
                  "name": "forecast"}
    assert invalid["content"].startswith("invalid arguments") and "city" in invalid["content"]
    assert loop.pending(_reply(content="done")) == []
    loop.pending(_reply([("forecast", '{"city": "A"}')]))
    with pytest.raises(ToolRunError):
        loop.pending(_reply([("forecast", '{"city": "B"}')]))
    with pytest.raises(ToolRunError):
        ToolLoop([], [forecast], 3).pending(_reply([("other", "{}")]))


def test_results_are_sent_as_json_and_async_tools_need_the_async_client() -> None:
    async def later(city: str) -> dict[str, str]:
        return {"city": city}

    def fails(city: str) -> str:
        raise RuntimeError("no network")

    loop = ToolLoop([], [later, fails, Point], 3)  # type: ignore[list-item]
    (call,) = loop.pending(_reply([("fails", '{"city": "x"}')]))
    loop.run(call)
    assert loop.messages[-1]["content"] == "error: RuntimeError: no network"
    (call,) = loop.pending(_reply([("later", '{"city": "x"}')]))
    with pytest.raises(TypeError, match="AsyncMaaS"):
        loop.run(call)
    loop.record(call, {"when": [1, 2]})
    assert json.loads(loop.messages[-1]["content"]) == {"when": [1, 2]}
