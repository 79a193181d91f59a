"""Streams: typed chunks, errors inside the stream, truncation, and releasing the connection."""

from __future__ import annotations

import gc

import httpx
import pytest

from maas_sdk import (
    APIConnectionError,
    APIError,
    APIStatusError,
    AsyncStream,
    BadRequestError,
    GenerationChunk,
    InternalServerError,
    RateLimitError,
    Stream,
)

from .fakes import Body, Handler, chunk, make_async_client, make_client, sse, stream_response

COMPLETE = sse(chunk("Hel"), chunk("lo"), chunk("!", "stop"))


def serve(body: Body, calls: list[httpx.Request] | None = None) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        if calls is not None:
            calls.append(request)
        return stream_response(body)

    return handler


def stream_of(body: Body) -> Stream[GenerationChunk]:
    return make_client(serve(body)).generate("hi", model="m", stream=True)


def test_chunks_are_typed_and_carry_the_request_id() -> None:
    body = Body([COMPLETE])
    with stream_of(body) as stream:
        chunks = list(stream)
    assert [type(c) for c in chunks] == [GenerationChunk] * 3
    assert "".join(c.text for c in chunks) == "Hello!"
    assert chunks[-1].finish_reason == "stop"
    assert {c.request_id for c in chunks} == {"req-s"}
    assert stream.request_id == "req-s"
    assert body.closed


def test_bytes_split_anywhere_give_the_same_chunks() -> None:
    pieces = [COMPLETE[i : i + 1] for i in range(len(COMPLETE))]
    with stream_of(Body(pieces)) as stream:
        assert "".join(c.text for c in stream) == "Hello!"


def test_request_asks_for_a_stream() -> None:
    calls: list[httpx.Request] = []
    client = make_client(serve(Body([COMPLETE]), calls))
    with client.generate("hi", model="m", stream=True, include_usage=True) as stream:
        list(stream)
    import json

    body = json.loads(calls[0].content)
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}


def test_comments_and_unknown_events_are_skipped() -> None:
    raw = b": ping\n\nevent: heartbeat\ndata: {}\n\n" + COMPLETE
    with stream_of(Body([raw])) as stream:
        assert "".join(c.text for c in stream) == "Hello!"


@pytest.mark.parametrize(
    ("error", "expected", "status"),
    [
        ({"message": "boom", "type": "server_error", "code": "internal_error"}, InternalServerError, 500),
        ({"message": "slow down", "type": "rate_limit_error"}, RateLimitError, 429),
        ({"message": "bad", "type": "invalid_request_error", "param": "stop"}, BadRequestError, 400),
        ({"message": "overloaded", "type": "overloaded_error"}, InternalServerError, 503),
        ({"message": "by code", "code": 429}, RateLimitError, 429),
    ],
)
def test_error_event_raises_the_typed_error(error: dict[str, object], expected: type, status: int) -> None:
    body = Body([sse(chunk("Hel"), {"error": error})])
    seen: list[str] = []
    with pytest.raises(expected) as info, stream_of(body) as stream:
        for c in stream:
            seen.append(c.text)
    assert seen == ["Hel"]  # chunks before the error are delivered first
    assert isinstance(info.value, APIStatusError)
    assert info.value.status_code == status
    assert str(error["message"]) in str(info.value)
    assert body.closed


def test_error_event_of_unknown_type_is_a_plain_api_error() -> None:
    body = Body([sse({"error": {"message": "odd", "type": "weird_error"}})])
    with pytest.raises(APIError) as info, stream_of(body) as stream:
        list(stream)
    assert type(info.value) is APIError
    assert "odd" in str(info.value)


def test_named_error_event_raises() -> None:
    raw = b'event: error\ndata: {"error": {"message": "quota", "type": "rate_limit_error"}}\n\n'
    with pytest.raises(RateLimitError), stream_of(Body([raw])) as stream:
        list(stream)


def test_malformed_chunk_raises_api_error() -> None:
    with pytest.raises(APIError, match="Malformed chunk"), stream_of(Body([sse("not json")])) as stream:
        list(stream)


def test_missing_done_with_unfinished_choice_is_a_connection_error() -> None:
    body = Body([sse(chunk("Hel"), chunk("lo"), done=False)])
    with pytest.raises(APIConnectionError, match="DONE"), stream_of(body) as stream:
        list(stream)
    assert body.closed


def test_empty_body_is_a_connection_error() -> None:
    with pytest.raises(APIConnectionError), stream_of(Body([])) as stream:
        list(stream)


def test_missing_done_tolerated_when_every_choice_finished() -> None:
    body = Body([sse(chunk("a", index=0), chunk("b", index=1), chunk("", "stop", 0), chunk("", "length", 1),
                     done=False)])
    with stream_of(body) as stream:
        assert len(list(stream)) == 4


def test_missing_done_not_tolerated_when_one_choice_is_open() -> None:
    body = Body([sse(chunk("a", index=0), chunk("b", index=1), chunk("", "stop", 0), done=False)])
    with pytest.raises(APIConnectionError), stream_of(body) as stream:
        list(stream)


def test_event_cut_mid_way_is_a_connection_error() -> None:
    body = Body([sse(chunk("a"), done=False) + b'data: {"id": "cmpl-1", "obj'])
    with pytest.raises(APIConnectionError, match="middle of an event"), stream_of(body) as stream:
        list(stream)


def test_cut_after_every_choice_finished_is_still_an_error_if_an_event_was_cut() -> None:
    body = Body([sse(chunk("a", "stop"), done=False) + b"data: [DO"])
    with pytest.raises(APIConnectionError, match="middle of an event"), stream_of(body) as stream:
        list(stream)


@pytest.mark.parametrize("error", [httpx.RemoteProtocolError("peer closed"), httpx.ReadError("reset")])
def test_transport_error_mid_body_is_a_connection_error_and_not_retried(error: Exception) -> None:
    calls: list[httpx.Request] = []
    body = Body([sse(chunk("Hel"), done=False)], error=error)
    client = make_client(serve(body, calls))
    seen = []
    with pytest.raises(APIConnectionError) as info:
        for c in client.generate("hi", model="m", stream=True):
            seen.append(c.text)
    assert seen == ["Hel"]
    assert isinstance(info.value.__cause__, type(error))
    assert len(calls) == 1
    assert body.closed


def test_what_follows_done_is_read_but_ignored() -> None:
    # Read to the end, so the connection can be reused; not parsed, so it cannot fail the stream.
    body = Body([COMPLETE, b"data: trailing garbage that would fail\n\n"])
    with stream_of(body) as stream:
        assert len(list(stream)) == 3
    assert body.pieces_read == 2
    assert body.closed


def test_connection_released_on_break_in_with_block() -> None:
    body = Body([sse(chunk("a")), sse(chunk("b"))])
    with stream_of(body) as stream:
        for _ in stream:
            break
        assert not body.closed
    assert body.closed


def test_connection_released_when_consumer_raises() -> None:
    body = Body([COMPLETE])
    with pytest.raises(KeyError), stream_of(body) as stream:
        for _ in stream:
            raise KeyError("consumer failed")
    assert body.closed


def test_connection_released_on_break_without_with_block() -> None:
    body = Body([sse(chunk("a")), sse(chunk("b"))])
    for _ in stream_of(body):
        break
    assert body.closed


def test_connection_released_when_unread_stream_is_dropped() -> None:
    body = Body([COMPLETE])
    stream = stream_of(body)
    gc.disable()
    try:
        del stream
        assert body.closed
    finally:
        gc.enable()


def test_close_releases_and_ends_iteration() -> None:
    body = Body([sse(chunk("a")), sse(chunk("b"))])
    stream = stream_of(body)
    next(stream)
    stream.close()
    assert body.closed
    assert list(stream) == []


def test_error_status_on_stream_request_raises_before_iteration() -> None:
    attempts = []

    def handler(request: httpx.Request) -> httpx.Response:
        attempts.append(request)
        body = Body([b'{"error": {"message": "bad stop", "param": "stop"}}'])
        return httpx.Response(400, stream=body)

    with pytest.raises(BadRequestError) as info:
        make_client(handler).generate("hi", model="m", stream=True)
    assert info.value.param == "stop"
    assert len(attempts) == 1


def test_chat_stream_text() -> None:
    def payload(content: str | None, finish: str | None = None) -> dict[str, object]:
        return {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
                "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": finish}]}

    body = Body([sse(payload("Par"), payload("is"), payload(None, "stop"))])
    client = make_client(serve(body))
    with client.chat([{"role": "user", "content": "capital?"}], model="m", stream=True) as stream:
        assert "".join(c.text for c in stream) == "Paris"


async def test_async_stream_chunks_and_release() -> None:
    body = Body([COMPLETE])
    client = make_async_client(serve(body))
    stream = await client.generate("hi", model="m", stream=True)
    assert isinstance(stream, AsyncStream)
    async with stream:
        text = "".join([c.text async for c in stream])
    assert text == "Hello!"
    assert body.closed


async def test_async_stream_released_on_break() -> None:
    body = Body([sse(chunk("a")), sse(chunk("b"))])
    client = make_async_client(serve(body))
    async with await client.generate("hi", model="m", stream=True) as stream:
        async for _ in stream:
            break
    assert body.closed


async def test_async_stream_errors_and_truncation() -> None:
    error_body = Body([sse({"error": {"message": "boom", "type": "server_error"}})])
    client = make_async_client(serve(error_body))
    with pytest.raises(InternalServerError):
        async with await client.generate("hi", model="m", stream=True) as stream:
            [c async for c in stream]
    assert error_body.closed

    cut = Body([sse(chunk("a"), done=False)], error=httpx.ReadError("reset"))
    client = make_async_client(serve(cut))
    with pytest.raises(APIConnectionError):
        async for _ in await client.generate("hi", model="m", stream=True):
            pass
    assert cut.closed


async def test_async_stream_anext_and_aclose() -> None:
    body = Body([sse(chunk("a")), sse(chunk("b"))])
    client = make_async_client(serve(body))
    stream = await client.generate("hi", model="m", stream=True)
    first = await stream.__anext__()
    assert first.text == "a"
    await stream.aclose()
    assert body.closed
