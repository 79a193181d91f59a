"""The parser of Responses API streams: named events that end with an event of their own.

A Responses stream has no `data: [DONE]`: it is complete once a terminal event
(`response.completed`, `response.incomplete`, `response.failed`) has come, and that event
carries the whole response. An `error` event raises the typed error it describes (its fields
under `error`, as OpenAI's servers send it, or flat, as OpenAI documents it); a body that ends
before a terminal event raises `APIConnectionError`, so a truncated answer is never taken for
a whole one. The interface is `ChunkParser`'s, so `Stream` and `AsyncStream` read both.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
from pydantic import ValidationError

from maas_sdk._core import set_request_id
from maas_sdk._exceptions import APIConnectionError, APIError, stream_error
from maas_sdk._sse import SSEDecoder
from maas_sdk.protocol.responses import TERMINAL_EVENTS, Response, ResponseStreamEvent

__all__ = ["EventParser"]


class EventParser:
    """Bytes in, `ResponseStreamEvent`s out; keeps the response of the terminal event."""

    __slots__ = ("_decoder", "_final", "_request_id", "_response", "_validate", "done")

    def __init__(self, response: httpx.Response) -> None:
        self._validate = ResponseStreamEvent.__pydantic_validator__.validate_json
        self._response = response
        self._request_id: str | None = response.headers.get("x-request-id")
        self._decoder = SSEDecoder()
        self._final: Response | None = None
        self.done = False

    def feed(self, data: bytes) -> Iterator[ResponseStreamEvent]:
        """The events these bytes complete; after the terminal one, `done` is True."""
        for sse in self._decoder.feed(data):
            if sse.data == "[DONE]":  # not sent by OpenAI, but by some compatible servers
                self.done = True
                return
            if sse.event == "error":
                raise self._error(sse.data)
            try:
                event: ResponseStreamEvent = self._validate(sse.data)
            except ValidationError:
                raise self._error(sse.data) from None
            if event.type == "error":
                raise self._error(sse.data)
            set_request_id(event, self._request_id)
            if event.type in TERMINAL_EVENTS and event.response is not None:
                set_request_id(event.response, self._request_id)
                self._final = event.response
                self.done = True
                yield event
                return
            yield event

    def end(self) -> None:
        """The body ended: raise unless the terminal event had come."""
        if not self.done:
            raise APIConnectionError("The stream ended before its response.completed (or other final) event; "
                                     "the answer is incomplete", request=self._response.request)

    @staticmethod
    def text_of(event: ResponseStreamEvent) -> str:
        return event.delta or "" if event.type == "response.output_text.delta" else ""

    def final(self) -> Response:
        if self._final is None:
            raise RuntimeError("the stream was closed before its end: there is no whole response")
        return self._final

    def _error(self, data: str) -> APIError:
        try:
            payload = json.loads(data)
        except ValueError:
            payload = None
        if isinstance(payload, dict):
            if not isinstance(payload.get("error"), dict) and "message" in payload:
                payload = {"error": {key: payload.get(key) for key in ("message", "code", "param")}}
            if "error" in payload:
                return stream_error(payload, self._response)
        return APIError(f"Malformed event in stream: {data[:200]!r}", self._response.request, body=data)
