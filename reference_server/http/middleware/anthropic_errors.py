"""Anthropic's error shape on the Messages routes: `{"type": "error", "error": {"type",
"message"}}` with Anthropic's type names, and a `request-id` header on every answer.

Every other part of the server answers errors in the one OpenAI shape (`http/errors.py`): the
authentication and rate-limit middleware, the body limits, the availability checks, the
unhandled-error guard. Rather than teach each of them a second dialect, this middleware, mounted
outside them all, rewrites the error answers of `/v1/messages` and its sub-paths (an unknown
one included) as Anthropic's clients expect them: the status stays, the body is re-shaped, and
an error event that the shutdown writes into a stream becomes an Anthropic `error` event.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from maas_sdk.protocol.messages import AnthropicErrorBody, AnthropicErrorDetail
from maas_sdk.protocol.vocabulary import ANTHROPIC_ERROR_TYPES, ERROR_TYPES

MESSAGES_PATH = "/v1/messages"
_OPENAI_DONE = b"data: [DONE]"
# An error event inside a stream has no status of its own: its OpenAI type says which.
_STATUS_OF_TYPE = {kind: status for status, kind in sorted(ERROR_TYPES.items(), reverse=True)}


def anthropic_error_type(status: int) -> str:
    return ANTHROPIC_ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")


def anthropic_error(status: int, message: str, param: str | None = None) -> AnthropicErrorBody:
    """The body for an error; the parameter at fault is named in the message (Anthropic's body
    has no field for it), as `param: message` unless the message names it already."""
    if param and param != "body" and param not in message:
        message = f"{param}: {message}"
    return AnthropicErrorBody(error=AnthropicErrorDetail(type=anthropic_error_type(status), message=message))


def stream_error_event(body: AnthropicErrorBody) -> bytes:
    return b"event: error\ndata: " + body.model_dump_json().encode() + b"\n\n"


def is_messages_path(path: str) -> bool:
    return path == MESSAGES_PATH or path.startswith(MESSAGES_PATH + "/")


def _from_openai(status: int | None, raw: bytes) -> AnthropicErrorBody | None:
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    error = data.get("error") if isinstance(data, dict) else None
    if not isinstance(error, dict) or not isinstance(error.get("message"), str):
        return None
    status = status or _STATUS_OF_TYPE.get(str(error.get("type")), 500)
    param = error.get("param")
    return anthropic_error(status, error["message"], param if isinstance(param, str) else None)


def _stream_frames(chunk: bytes) -> bytes:
    """An OpenAI-framed error event (and its `[DONE]`) in a Messages stream, as Anthropic's."""
    frames = []
    for frame in chunk.split(b"\n\n"):
        if frame.startswith(_OPENAI_DONE):
            continue
        if frame.startswith(b"data: {"):
            body = _from_openai(None, frame[len(b"data: "):])
            if body is not None:
                frames.append(stream_error_event(body))
                continue
        if frame:
            frames.append(frame + b"\n\n")
    return b"".join(frames)


class AnthropicErrorMiddleware:
    """Re-shapes the error answers of the Messages routes; other paths pass untouched."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not is_messages_path(scope["path"]):
            await self.app(scope, receive, send)
            return
        request_id = str(scope.get("state", {}).get("request_id", "")).encode("latin-1", "replace")
        held: dict[str, Any] = {}
        parts: list[bytes] = []

        async def reshaping_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k != b"request-id"]
                if request_id:
                    headers.append((b"request-id", request_id))
                message = {**message, "headers": headers}
                media = dict(headers).get(b"content-type", b"")
                if message["status"] >= 400 and media.startswith(b"application/json"):
                    held["start"] = message  # sent once the body is known
                    return
                held["stream"] = media.startswith(b"text/event-stream")
                await send(message)
                return
            if message["type"] != "http.response.body":
                await send(message)
                return
            body = bytes(message.get("body", b""))
            if "start" in held:
                parts.append(body)
                if message.get("more_body", False):
                    return
                await self._send_reshaped(held.pop("start"), b"".join(parts), send)
                return
            if held.get("stream") and body.startswith(b"data: "):
                message = {**message, "body": _stream_frames(body)}
            await send(message)

        await self.app(scope, receive, reshaping_send)

    @staticmethod
    async def _send_reshaped(start: Message, raw: bytes, send: Send) -> None:
        reshaped = _from_openai(start["status"], raw)
        body = reshaped.model_dump_json().encode() if reshaped is not None else raw
        headers = [(k, v) for k, v in start["headers"] if k != b"content-length"]
        headers.append((b"content-length", str(len(body)).encode()))
        await send({**start, "headers": headers})
        await send({"type": "http.response.body", "body": body, "more_body": False})
