"""`POST /v1/messages` and `POST /v1/messages/count_tokens`: Anthropic's Messages API, served
by the Chat Completions route (`chat.start_chat` / `chat_chunks` / `collect_chat`) through the
translation of `_messages_chat`, so both APIs share validation, tools, constrained decoding,
limits and the engine. Errors on these paths are in Anthropic's shape
(`middleware/anthropic_errors.py`); a stream is Anthropic's named events, `event: ping` keeping
it alive and an `error` event if it fails after it has started.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable
from typing import TypeVar

from starlette.requests import Request
from starlette.responses import Response

from maas_sdk.protocol import messages as m
from maas_sdk.protocol.vocabulary import DEFAULT_GENERATOR
from reference_server.errors import DomainError
from reference_server.http.errors import HTTPError, bad_request
from reference_server.http.ignored import mark_ignored
from reference_server.http.middleware.anthropic_errors import anthropic_error, stream_error_event
from reference_server.http.parsing import json_response, parse_body, served_model
from reference_server.http.routes import _messages_chat as translate
from reference_server.http.routes.chat import ChatRun, chat_chunks, collect_chat, render_chat, start_chat
from reference_server.http.routing import BODY_ERRORS, RouteTable
from reference_server.http.sse import sse_response
from reference_server.inference.structured.requests import plan_chat
from reference_server.state import state_of

logger = logging.getLogger("reference_server")
table = RouteTable("messages")
T = TypeVar("T")
PING = b'event: ping\ndata: {"type":"ping"}\n\n'
EXAMPLE = {"model": DEFAULT_GENERATOR, "max_tokens": 16, "messages": [{"role": "user", "content": "Hi"}]}


def frame(event: m.StreamEvent) -> bytes:
    """One server-sent event as Anthropic frames it: its `type` as the event name too."""
    data = event.model_dump_json()
    return f"event: {event.type}\ndata: {data}\n\n".encode()


async def _renaming(work: Awaitable[T], origins: list[str]) -> T:
    try:
        return await work
    except (DomainError, HTTPError) as exc:
        raise translate.renamed(exc, origins) from None


@table.route("POST", "/v1/messages", "Generate the next message of a conversation (Anthropic's Messages API).",
             request=m.MessageCreateRequest, response=m.Message, stream=m.MessageStreamEvent,
             named_events=True, errors=BODY_ERRORS, error_body=m.AnthropicErrorBody, example=EXAMPLE)
async def create_message(request: Request) -> Response:
    body = await parse_body(request, m.MessageCreateRequest)
    if body.messages[-1].role == "assistant":
        raise bad_request(
            f"messages[{len(body.messages) - 1}]: the conversation ends with an assistant turn; this "
            "server does not continue a prefilled reply. End with a user turn.", param="messages")
    translated = translate.to_chat(body)
    run = await _renaming(start_chat(request, translated.chat), translated.origins)
    if body.stream:
        return mark_ignored(sse_response(_events(run, body.model), state_of(request).settings.keepalive_seconds,
                                         ending=_ended, ping=PING), body)
    completion = await collect_chat(request, run)
    return mark_ignored(json_response(translate.to_message(completion, body.model, run.handles[0].stop_sequence)),
                        body)


async def _events(run: ChatRun, model: str) -> AsyncIterator[bytes]:
    start = m.Message(id=translate.message_id(), content=[], model=model,
                      usage=m.MessagesUsage(input_tokens=run.prompt_tokens, output_tokens=0))
    yield frame(m.MessageStartEvent(message=start))
    yield PING
    stream = translate.StreamTranslator()
    async for chunk in chat_chunks(run, include_usage=True):
        for event in stream.feed(chunk):
            yield frame(event)
    for event in stream.finish(run.handles[0].stop_sequence):
        yield frame(event)


async def _ended(source: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """The stream, or an Anthropic `error` event where it fails after it has started."""
    try:
        async for item in source:
            yield item
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        if isinstance(exc, DomainError):
            exc = HTTPError.of(exc)
        if isinstance(exc, HTTPError):
            body = anthropic_error(exc.status, exc.message, exc.param)
        else:
            logger.error("stream failed: %s", type(exc).__name__, exc_info=exc)
            body = anthropic_error(500, "The server failed while streaming this response.")
        yield stream_error_event(body)


@table.route("POST", "/v1/messages/count_tokens", "Count the tokens of a Messages prompt, without generating.",
             request=m.MessageCountTokensRequest, response=m.MessageTokensCount, errors=BODY_ERRORS,
             error_body=m.AnthropicErrorBody,
             example={"model": DEFAULT_GENERATOR, "messages": [{"role": "user", "content": "Hi"}]})
async def count_tokens(request: Request) -> Response:
    body = await parse_body(request, m.MessageCountTokensRequest)
    translated = translate.to_chat(body)
    chat = translated.chat

    async def count() -> int:
        served = served_model(request, chat.model, "generate")
        plan = plan_chat(chat.response_format, None, chat.tools, chat.tool_choice, chat.parallel_tool_calls)
        ids = await state_of(request).thread_work.run(render_chat, chat.messages, served.loaded.tokenizer, plan)
        return len(ids)

    tokens = await _renaming(count(), translated.origins)
    return mark_ignored(json_response(m.MessageTokensCount(input_tokens=tokens)), body)
