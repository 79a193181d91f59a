"""`with_raw_response` and `with_streaming_response`: every method, both clients, openai-python's semantics."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from maas_sdk import (
    AsyncPage,
    AsyncStream,
    AsyncStreamedResponse,
    BadRequestError,
    BoundFineTuningJob,
    Generation,
    NotFoundError,
    Page,
    RawResponse,
    Stream,
    StreamedResponse,
)

from .fakes import (
    Body,
    FakeClock,
    chunk,
    error_response,
    generation,
    json_response,
    make_async_client,
    make_client,
    sse,
)


class Server:
    """Answers by path, with a custom header, and keeps the requests; `/files/*/content` streams a body."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.body = Body([b"line1\n", b"line2\n"])
        self.failures: list[httpx.Response] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.failures:
            return self.failures.pop(0)
        path = request.url.path
        headers = {"x-request-id": "req-raw", "x-custom": "yes"}
        if path.endswith("/content"):
            return httpx.Response(200, stream=self.body, headers=headers)
        if path == "/v1/completions" and b'"stream":true' in request.content.replace(b" ", b""):
            return httpx.Response(200, content=sse(chunk("Hi"), chunk("!", "stop")),
                                  headers={**headers, "content-type": "text/event-stream"})
        if path == "/v1/completions":
            return httpx.Response(200, json=generation("raw text"), headers=headers)
        if path == "/v1/models":
            after = request.url.params.get("after")
            data = [{"id": "b"}] if after else [{"id": "a"}]
            return httpx.Response(200, json={"object": "list", "data": data, "has_more": not after},
                                  headers=headers)
        if path.startswith("/v1/fine_tuning/jobs"):
            status = "queued" if request.method == "POST" else "succeeded"
            return httpx.Response(200, json={"id": "ftjob-1", "created_at": 1, "model": "m", "status": status,
                                             "training_file": "file-1"}, headers=headers)
        return httpx.Response(404, json={"error": {"message": "no route"}})


def test_raw_generate_has_headers_status_and_parses_to_the_typed_result() -> None:
    server = Server()
    raw = make_client(server).with_raw_response.generate("hi", model="m", max_tokens=3)
    assert isinstance(raw, RawResponse)
    assert raw.status_code == 200
    assert raw.headers["x-custom"] == "yes" and raw.request_id == "req-raw"
    assert json.loads(server.requests[0].content) == {"model": "m", "prompt": "hi", "max_tokens": 3}
    assert raw.json()["choices"][0]["text"] == "raw text"
    assert json.loads(raw.text) == json.loads(raw.content) == raw.json()
    result = raw.parse()
    assert isinstance(result, Generation) and result.text == "raw text" and result.request_id == "req-raw"
    assert raw.parse() is result
    assert "200" in repr(raw) and "/v1/completions" in repr(raw)


def test_raw_list_parses_to_a_page_that_keeps_paginating() -> None:
    server = Server()
    raw = make_client(server).with_raw_response.models.list()
    assert raw.headers["x-custom"] == "yes"
    page = raw.parse()
    assert isinstance(page, Page)
    assert [m.id for m in page] == ["a", "b"], "the next page is fetched (and parsed) as usual"
    assert [r.url.params.get("after") for r in server.requests] == [None, "a"]


def test_raw_job_parses_to_a_job_that_can_wait(clock: FakeClock) -> None:
    server = Server()
    client = make_client(server, clock)
    job = client.fine_tuning.with_raw_response.jobs.create(model="m", training_file="file-1").parse()
    assert isinstance(job, BoundFineTuningJob) and job.status == "queued"
    assert job.wait(poll_interval=1).status == "succeeded"


def test_raw_stream_parses_to_the_stream() -> None:
    raw = make_client(Server()).with_raw_response.generate("hi", model="m", stream=True)
    assert raw.headers["content-type"] == "text/event-stream"
    stream = raw.parse()
    assert isinstance(stream, Stream)
    assert "".join(stream.text_stream) == "Hi!"


def test_raw_views_still_raise_and_retry(clock: FakeClock) -> None:
    server = Server()
    server.failures = [error_response(400, "bad", param="max_tokens")]
    client = make_client(server, clock)
    with pytest.raises(BadRequestError):
        client.with_raw_response.generate("hi", model="m")
    server.failures = [error_response(503)]
    assert client.with_raw_response.generate("hi", model="m").status_code == 200
    assert len(server.requests) == 3 and clock.sleeps


def test_streaming_response_sends_on_enter_and_reads_only_when_asked() -> None:
    server = Server()
    client = make_client(server)
    opened = client.with_streaming_response.files.content("file-1")
    assert server.requests == [], "nothing is sent before entering the block"
    with opened as response:
        assert isinstance(response, StreamedResponse)
        assert len(server.requests) == 1 and response.headers["x-custom"] == "yes"
        assert server.body.pieces_read == 0, "the body is not read until asked"
        assert list(response.iter_lines()) == ["line1", "line2"]
    assert server.body.closed


def test_streaming_response_parse_reads_the_body() -> None:
    client = make_client(Server())
    with client.with_streaming_response.generate("hi", model="m") as response:
        assert response.parse().text == "raw text"
    with client.files.with_streaming_response.content("file-1") as response:
        assert response.parse() == b"line1\nline2\n"
    with client.with_streaming_response.generate("hi", model="m", stream=True) as response:
        assert [c.text for c in response.parse()] == ["Hi", "!"]


def test_helpers_that_are_not_one_request_have_no_raw_form() -> None:
    client = make_client(Server())
    for name in ("wait", "close", "with_options", "_api"):
        with pytest.raises(AttributeError):
            getattr(client.with_raw_response.fine_tuning.jobs if name == "wait" else client.with_raw_response, name)
    with pytest.raises(AttributeError, match="not an API method"):
        client.with_raw_response.base_url  # noqa: B018
    assert {"generate", "chat", "score", "models", "files", "fine_tuning"} <= set(dir(client.with_raw_response))


def test_the_view_leaves_the_client_parsing() -> None:
    client = make_client(Server())
    client.with_raw_response.generate("hi", model="m")
    assert isinstance(client.generate("hi", model="m"), Generation)


async def test_async_raw_and_streaming_responses() -> None:
    server = Server()
    client = make_async_client(server)
    raw: Any = await client.with_raw_response.generate("hi", model="m")
    assert isinstance(raw, RawResponse) and raw.headers["x-custom"] == "yes"
    assert raw.parse().text == "raw text"

    page = (await client.with_raw_response.models.list()).parse()
    assert isinstance(page, AsyncPage)
    assert [m.id async for m in page] == ["a", "b"]

    stream = (await client.with_raw_response.generate("hi", model="m", stream=True)).parse()
    assert isinstance(stream, AsyncStream)
    assert [text async for text in stream.text_stream] == ["Hi", "!"]

    opened = client.with_streaming_response.files.content("file-1")
    requests_before = len(server.requests)
    async with opened as response:
        assert isinstance(response, AsyncStreamedResponse)
        assert len(server.requests) == requests_before + 1
        assert server.body.pieces_read == 0
        assert [line async for line in response.iter_lines()] == ["line1", "line2"]
    assert server.body.closed

    async with client.with_streaming_response.generate("hi", model="m") as response:
        assert (await response.parse()).text == "raw text"
        assert response.status_code == 200
    async with client.with_streaming_response.models.list() as response:
        listed = await response.parse()
        assert isinstance(listed, AsyncPage) and [m.id async for m in listed] == ["a", "b"]
    async with client.fine_tuning.jobs.with_streaming_response.retrieve("ftjob-1") as response:
        assert (await response.json())["status"] == "succeeded"
    with pytest.raises(BadRequestError):
        server.failures = [error_response(400, "bad")]
        async with client.with_streaming_response.generate("hi", model="m"):
            pass


def test_json_error_bodies_are_typed_errors_in_streaming_views() -> None:
    server = Server()
    server.failures = [json_response({"error": {"message": "gone"}}, status=404)]
    with pytest.raises(NotFoundError, match="gone"), make_client(server).with_streaming_response.models.list():
        pass
