"""`client.responses` against a mock transport: the request bodies it sends (tools in the
Responses shape, `text_format` as a JSON schema, earlier output items sent back as input), the
typed answers (`output_text`, `.parsed`, pages of input items), and its streams: named events
without `[DONE]`, complete at their terminal event, raising on `error` events and on a body that
ends too early. Sync and async."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from pydantic import BaseModel

from maas_sdk import (
    APIConnectionError,
    APIError,
    BadRequestError,
    OutputFunctionCall,
    ParsedResponse,
    RateLimitError,
    Response,
)

from .fakes import Body, json_response, make_async_client, make_client, stream_response


class City(BaseModel):
    name: str
    country: str


def response(text: str = "Paris.", status: str = "completed", **extra: Any) -> dict[str, Any]:
    output = [{"id": "msg_1", "type": "message", "role": "assistant", "status": status,
               "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]}]
    return {"id": "resp_1", "object": "response", "created_at": 1, "status": status, "model": "m", "output": output,
            "usage": {"input_tokens": 5, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": 2,
                      "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 7}, **extra}


def events(*payloads: dict[str, Any], done: bool = False) -> bytes:
    frames = [f"event: {p['type']}\ndata: {json.dumps(p)}\n\n" for p in payloads]
    return ("".join(frames) + ("data: [DONE]\n\n" if done else "")).encode()


def delta(n: int, text: str) -> dict[str, Any]:
    return {"type": "response.output_text.delta", "sequence_number": n, "item_id": "msg_1", "output_index": 0,
            "content_index": 0, "delta": text, "logprobs": []}


STREAM = events(
    {"type": "response.created", "sequence_number": 0, "response": response("", "in_progress")},
    {"type": "response.output_item.added", "sequence_number": 1, "output_index": 0,
     "item": {"id": "msg_1", "type": "message", "role": "assistant", "status": "in_progress", "content": []}},
    delta(2, "Par"), delta(3, "is."),
    {"type": "response.completed", "sequence_number": 4, "response": response("Paris.")},
)


def serving(body: bytes, seen: list[httpx.Request] | None = None) -> Any:
    def handle(request: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append(request)
        return stream_response(Body([body[i:i + 40] for i in range(0, len(body), 40)]))

    return handle


def test_create_sends_the_responses_shape_and_types_the_answer() -> None:
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return json_response(response())

    def get_weather(city: str) -> str:
        """The weather in a city."""
        return city

    earlier = OutputFunctionCall(id="fc_1", call_id="call_1", name="get_weather", arguments='{"city": "Paris"}')
    reply = make_client(handle).responses.create(
        model="m", input=[{"role": "user", "content": "Weather?"}, earlier,
                          {"type": "function_call_output", "call_id": "call_1", "output": "Sunny"}],
        tools=[get_weather], tool_choice="none", max_output_tokens=9, instructions=None, seed=3)
    assert isinstance(reply, Response) and reply.output_text == "Paris." and reply.usage is not None
    assert reply.usage.input_tokens == 5 and reply.request_id == "req-1"
    (request,) = seen
    assert request.url.path == "/v1/responses"
    body = json.loads(request.content)
    assert body["input"][1] == {"id": "fc_1", "type": "function_call", "call_id": "call_1", "name": "get_weather",
                                "arguments": '{"city": "Paris"}', "status": "completed"}
    (tool,) = body["tools"]
    assert tool["type"] == "function" and tool["name"] == "get_weather" and "function" not in tool
    assert tool["parameters"]["properties"] == {"city": {"title": "City", "type": "string"}}
    assert {k: body[k] for k in ("tool_choice", "max_output_tokens", "seed")} == {
        "tool_choice": "none", "max_output_tokens": 9, "seed": 3}
    assert "instructions" not in body and "stream" not in body


def test_parse_sends_the_schema_and_gives_the_model() -> None:
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return json_response(response('{"name": "Kyoto", "country": "Japan"}'))

    parsed = make_client(handle).responses.parse(model="m", input="A city?", text_format=City)
    assert isinstance(parsed, ParsedResponse) and parsed.parsed == City(name="Kyoto", country="Japan")
    fmt = json.loads(seen[0].content)["text"]["format"]
    assert (fmt["type"], fmt["name"], fmt["strict"]) == ("json_schema", "City", True)
    assert list(fmt["schema"]["properties"]) == ["name", "country"]


def test_an_incomplete_response_parses_to_none() -> None:
    handle = lambda request: json_response(response('{"name": "Ky', status="incomplete"))
    assert make_client(handle).responses.parse(model="m", input="A city?", text_format=City).parsed is None


def test_a_stream_ends_at_its_terminal_event_without_done() -> None:
    seen: list[httpx.Request] = []
    with make_client(serving(STREAM, seen)).responses.stream(model="m", input="Capital?") as stream:
        assert list(stream.text_stream) == ["Par", "is."]
        final = stream.get_final_response()
    assert final.output_text == "Paris." and final.status == "completed" and final.request_id == "req-s"
    assert json.loads(seen[0].content)["stream"] is True


def test_create_with_stream_yields_typed_events() -> None:
    stream = make_client(serving(STREAM)).responses.create(model="m", input="Capital?", stream=True)
    kinds = [(event.type, event.sequence_number) for event in stream]
    assert kinds == [("response.created", 0), ("response.output_item.added", 1), ("response.output_text.delta", 2),
                     ("response.output_text.delta", 3), ("response.completed", 4)]


def test_a_body_ending_before_the_terminal_event_is_an_error() -> None:
    cut = STREAM[:STREAM.index(b"event: response.completed")]
    stream = make_client(serving(cut)).responses.create(model="m", input="x", stream=True)
    with pytest.raises(APIConnectionError, match="before its response.completed"):
        list(stream)


def test_a_done_line_is_tolerated_after_the_terminal_event() -> None:
    with make_client(serving(STREAM + b"data: [DONE]\n\n")).responses.stream(model="m", input="x") as stream:
        assert stream.get_final_response().output_text == "Paris."


@pytest.mark.parametrize(("error_event", "kind"), [
    # As OpenAI's servers send it (and this server does): the error under `error`.
    ({"type": "error", "sequence_number": 2, "code": "rate_limit_exceeded", "message": "Slow down",
      "error": {"type": "rate_limit_error", "code": "rate_limit_exceeded", "message": "Slow down", "param": None}},
     RateLimitError),
    # As OpenAI's reference documents it: flat.
    ({"type": "error", "sequence_number": 2, "code": "invalid_value", "message": "Bad value", "param": "x"}, APIError),
])
def test_an_error_event_raises(error_event: dict[str, Any], kind: type[Exception]) -> None:
    body = STREAM[:STREAM.index(b"event: response.output_text.delta")] + events(error_event)
    stream = make_client(serving(body)).responses.create(model="m", input="x", stream=True)
    with pytest.raises(kind) as raised:
        list(stream)
    assert str(error_event["message"]) in str(raised.value)


def test_a_server_shutdown_notice_raises() -> None:
    """What a draining server sends on any stream it cuts short: an unnamed error event, `[DONE]`."""
    notice = {"error": {"message": "The server shut down before this request finished; retry it.",
                        "type": "server_error", "param": None, "code": "server_shutdown"}}
    body = STREAM[:STREAM.index(b"event: response.output_text.delta")]
    body += f"data: {json.dumps(notice)}\n\ndata: [DONE]\n\n".encode()
    stream = make_client(serving(body)).responses.create(model="m", input="x", stream=True)
    with pytest.raises(APIError, match="shut down"):
        list(stream)


def test_errors_before_the_stream_are_typed() -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        return json_response({"error": {"message": "max_output_tokens is too large", "type": "invalid_request_error",
                                        "param": "max_output_tokens", "code": "invalid_value"}}, status=400)

    with pytest.raises(BadRequestError) as raised:
        make_client(handle, max_retries=0).responses.create(model="m", input="x", max_output_tokens=10**6)
    assert raised.value.param == "max_output_tokens"


def test_stored_responses_and_their_input_items() -> None:
    items = [{"id": f"msg_{i}", "type": "message", "role": "user", "status": "completed",
              "content": [{"type": "input_text", "text": str(i)}]} for i in range(3)]
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.method == "DELETE":
            return json_response({"id": "resp_1", "object": "response", "deleted": True})
        if request.url.path.endswith("/input_items"):
            after = request.url.params.get("after")
            start = 0 if after is None else int(after[-1]) + 1
            page = items[start:start + 2]
            return json_response({"object": "list", "data": page, "first_id": page[0]["id"],
                                  "last_id": page[-1]["id"], "has_more": start + 2 < len(items)})
        return json_response(response())

    client = make_client(handle)
    assert client.responses.retrieve("resp_1").output_text == "Paris."
    page = client.responses.input_items("resp_1", limit=2, order="asc")
    assert [item.id for item in page] == ["msg_0", "msg_1", "msg_2"]
    assert page.data[0].content == [{"type": "input_text", "text": "0"}]
    assert client.responses.delete("resp_1").deleted
    assert [(r.method, r.url.path, dict(r.url.params)) for r in seen] == [
        ("GET", "/v1/responses/resp_1", {}),
        ("GET", "/v1/responses/resp_1/input_items", {"limit": "2", "order": "asc"}),
        ("GET", "/v1/responses/resp_1/input_items", {"limit": "2", "order": "asc", "after": "msg_1"}),
        ("DELETE", "/v1/responses/resp_1", {}),
    ]


async def test_the_async_client_alike() -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        if body.get("stream"):
            return serving(STREAM)(request)  # type: ignore[no-any-return]
        if "text" in body:
            return json_response(response('{"name": "Kyoto", "country": "Japan"}'))
        return json_response(response())

    async with make_async_client(handle) as client:
        assert (await client.responses.create(model="m", input="x")).output_text == "Paris."
        parsed = await client.responses.parse(model="m", input="x", text_format=City)
        assert parsed.parsed == City(name="Kyoto", country="Japan")
        async with await client.responses.stream(model="m", input="x") as stream:
            assert [text async for text in stream.text_stream] == ["Par", "is."]
            assert (await stream.get_final_response()).output_text == "Paris."
