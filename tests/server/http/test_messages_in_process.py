"""The Messages routes' refusals, in-process (no model needed): every error path answers in
Anthropic's shape with Anthropic's type names (authentication, validation, size, rate limit,
unknown model and sub-path), the key is read from `x-api-key` as well as `Authorization`, and
the other routes keep OpenAI's shape."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient
from starlette.types import Message, Receive, Scope, Send

from maas_sdk.protocol.messages import MessageCreateRequest
from reference_server.app import create_app
from reference_server.errors import InvalidRequest, Overloaded
from reference_server.http.errors import HTTPError
from reference_server.http.middleware.anthropic_errors import AnthropicErrorMiddleware
from reference_server.http.routes import messages
from reference_server.http.routes._messages_chat import renamed, to_chat
from reference_server.http.sse import DONE, error_event
from reference_server.settings import Settings

KEY = "sk-messages-in-process"
HEADERS = {"x-api-key": KEY, "anthropic-version": "2023-06-01"}
GOOD: dict[str, Any] = {"model": "no-such-model", "max_tokens": 8, "messages": [{"role": "user", "content": "Hi"}]}


def _client(tmp: Path, **settings: Any) -> Iterator[TestClient]:
    app = create_app(Settings(default_models=False, api_keys=[KEY], data_dir=tmp, **settings))
    with TestClient(app) as client:
        deadline = time.monotonic() + 30
        while client.get("/ready").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        yield client


@pytest.fixture(scope="module")
def http(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    yield from _client(tmp_path_factory.mktemp("messages"), max_body_bytes=4096)


def anthropic_error(reply: Any, status: int, kind: str) -> str:
    """The message of an Anthropic error body, after checking its status, shape and type."""
    assert reply.status_code == status, reply.text
    body = reply.json()
    assert set(body) == {"type", "error"} and body["type"] == "error", body
    assert set(body["error"]) == {"type", "message"} and body["error"]["type"] == kind, body
    assert reply.headers["request-id"] == reply.headers["x-request-id"]
    return str(body["error"]["message"])


def test_a_missing_or_wrong_key_is_an_authentication_error(http: TestClient) -> None:
    message = anthropic_error(http.post("/v1/messages", json=GOOD), 401, "authentication_error")
    assert "x-api-key" in message
    anthropic_error(http.post("/v1/messages", json=GOOD, headers={"x-api-key": "sk-wrong"}), 401,
                    "authentication_error")
    anthropic_error(http.post("/v1/messages/count_tokens", json=GOOD), 401, "authentication_error")


def test_the_key_is_read_from_x_api_key_and_from_bearer(http: TestClient) -> None:
    by_header = http.post("/v1/messages", json=GOOD, headers=HEADERS)
    by_bearer = http.post("/v1/messages", json=GOOD, headers={"Authorization": f"Bearer {KEY}"})
    for reply in (by_header, by_bearer):  # past authentication: the model is unknown
        assert "no-such-model" in anthropic_error(reply, 404, "not_found_error")
    assert http.get("/v1/models", headers={"x-api-key": KEY}).status_code == 200


@pytest.mark.parametrize(("change", "named"), [
    ({"max_tokens": None}, "max_tokens"),
    ({"surprise": 1}, "surprise"),
    ({"temperature": 1.5}, "temperature"),
    ({"messages": []}, "messages"),
    ({"messages": [{"role": "user", "content": [{"type": "text"}]}]}, "messages[0].content[0].text"),
    ({"messages": [{"role": "user", "content": [{"type": "video"}]}]}, "messages[0].content[0]"),
    ({"messages": [{"role": "user", "content": [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}}]}]},
     "messages[0].content[0]"),
    ({"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "The answer is"}]},
     "messages[1]"),
    ({"tools": [{"type": "web_search_20250305", "name": "web_search"}]}, "tools[0]"),
    ({"tool_choice": {"type": "tool"}}, "tool_choice"),
    ({"system": [{"type": "text", "text": 3}]}, "system[0].text"),
])
def test_invalid_requests_name_the_parameter(http: TestClient, change: dict[str, Any], named: str) -> None:
    body = {k: v for k, v in {**GOOD, **change}.items() if v is not None}
    message = anthropic_error(http.post("/v1/messages", json=body, headers=HEADERS), 400, "invalid_request_error")
    assert named in message


def test_images_are_refused_clearly(http: TestClient) -> None:
    image = {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.png"}}
    body = {**GOOD, "messages": [{"role": "user", "content": [{"type": "text", "text": "What is this?"}, image]}]}
    message = anthropic_error(http.post("/v1/messages", json=body, headers=HEADERS), 400, "invalid_request_error")
    assert message.startswith("messages[0].content[1]: image blocks are not supported")


def test_a_body_too_large_is_request_too_large(http: TestClient) -> None:
    body = {**GOOD, "messages": [{"role": "user", "content": "x" * 5000}]}
    anthropic_error(http.post("/v1/messages", json=body, headers=HEADERS), 413, "request_too_large")


def test_unknown_sub_paths_and_methods_answer_in_the_same_shape(http: TestClient) -> None:
    anthropic_error(http.post("/v1/messages/batches", json=GOOD, headers=HEADERS), 404, "not_found_error")
    anthropic_error(http.get("/v1/messages", headers=HEADERS), 405, "invalid_request_error")


def test_other_routes_keep_the_openai_shape(http: TestClient) -> None:
    reply = http.post("/v1/chat/completions", json={"model": "m", "messages": []}, headers=HEADERS)
    assert reply.status_code == 400 and set(reply.json()) == {"error"}
    assert reply.json()["error"]["param"] == "messages" and "request-id" not in reply.headers


def test_the_rate_limit_is_a_rate_limit_error(tmp_path: Path) -> None:
    for http in _client(tmp_path, rate_limit_rpm=1):
        http.post("/v1/messages", json=GOOD, headers=HEADERS)
        reply = http.post("/v1/messages", json=GOOD, headers=HEADERS)
        anthropic_error(reply, 429, "rate_limit_error")
        assert int(reply.headers["retry-after"]) >= 1


async def test_a_stream_that_fails_ends_with_an_anthropic_error_event() -> None:
    async def failing() -> AsyncIterator[bytes]:
        yield b'event: ping\ndata: {"type":"ping"}\n\n'
        raise Overloaded("The queue is full.", param="model")

    frames = [frame async for frame in messages._ended(failing())]
    assert frames[-1] == (b'event: error\ndata: {"type":"error","error":{"type":"rate_limit_error",'
                          b'"message":"model: The queue is full."}}\n\n')


async def test_the_shutdown_notice_in_a_messages_stream_becomes_an_error_event() -> None:
    shutdown = HTTPError(503, "The server shut down before this request finished; retry it.", code="server_shutdown")

    async def streaming(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/event-stream")]})
        await send({"type": "http.response.body", "body": b'event: ping\ndata: {"type":"ping"}\n\n',
                    "more_body": True})
        await send({"type": "http.response.body", "body": error_event(shutdown) + DONE, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {"type": "http", "path": "/v1/messages", "state": {"request_id": "req_1"}, "headers": []}
    await AnthropicErrorMiddleware(streaming)(scope, receive, send)
    body = b"".join(m.get("body", b"") for m in sent[1:])
    assert body.endswith(b'event: error\ndata: {"type":"error","error":{"type":"overloaded_error","message":'
                         b'"The server shut down before this request finished; retry it."}}\n\n')
    assert b"[DONE]" not in body and (b"request-id", b"req_1") in sent[0]["headers"]


def test_a_conversation_translates_to_chat_completions() -> None:
    body = MessageCreateRequest.model_validate({
        "model": "m", "max_tokens": 9, "stop_sequences": ["END"], "temperature": 0.5, "top_k": 4,
        "system": [{"type": "text", "text": "Be brief."}, {"type": "text", "text": "Be kind."}],
        "tools": [{"name": "get_weather", "input_schema": {"type": "object"}}],
        "tool_choice": {"type": "tool", "name": "get_weather", "disable_parallel_tool_use": True},
        "messages": [
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": [{"type": "thinking", "thinking": "hm", "signature": "s"},
                                              {"type": "text", "text": "Let me look."},
                                              {"type": "tool_use", "id": "toolu_1", "name": "get_weather",
                                               "input": {"city": "Paris"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "is_error": True,
                                          "content": [{"type": "text", "text": "timeout"}]},
                                         {"type": "text", "text": "Try again?"}]},
        ]})
    translated = to_chat(body)
    chat = translated.chat
    assert [(m.role, m.text()) for m in chat.messages] == [
        ("system", "Be brief.\nBe kind."), ("user", "Weather in Paris?"), ("assistant", "Let me look."),
        ("tool", "Error: timeout"), ("user", "Try again?")]
    assert translated.origins == ["system", "messages[0]", "messages[1]", "messages[2]", "messages[2]"]
    (call,) = chat.messages[2].tool_calls or []
    assert (call.id, call.function.name, call.function.arguments) == ("toolu_1", "get_weather", '{"city": "Paris"}')
    assert chat.messages[3].tool_call_id == "toolu_1"
    assert (chat.max_tokens, chat.stop, chat.temperature, chat.top_k) == (9, ["END"], 0.5, 4)
    assert chat.tool_choice is not None and not isinstance(chat.tool_choice, str)
    assert chat.tool_choice.function.name == "get_weather" and chat.parallel_tool_calls is False


def test_chat_errors_name_the_messages_parameters() -> None:
    origins = ["system", "messages[0]", "messages[1]", "messages[1]"]
    stop = renamed(InvalidRequest("At most 16 stop sequences are allowed, got 17.", param="stop"), origins)
    assert stop.param == "stop_sequences" and stop.message == "At most 16 stop sequences are allowed, got 17."
    content = renamed(InvalidRequest("messages[3].content is required.", param="messages[3].content"), origins)
    assert content.param == "messages[1].content" and content.message == "messages[1].content is required."
