"""`/v1/responses` (OpenAI's Responses API), served by translation onto Chat Completions.

A request is translated into a `ChatCompletionRequest` (`_responses_input`), run through the
chat route's own `start_chat` / `collect_chat` / `chat_chunks`, and its reply translated back
into a response or its stream of events (`_responses_output`): validation, the token limits,
constrained decoding, tools and the engine are the chat path's, not copies of it.

Responses are stored (unless `store: false`) per API key for `MAAS_RESPONSE_TTL_DAYS`: with
their input items and the conversation that `previous_response_id` continues. Another key's
response ids are 404, as unknown ones are.

`start_response` and `collect_response` are the two steps of one response without HTTP streaming
(what the Batch API runs for `/v1/responses` lines); `response_events` streams it instead.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response

from maas_sdk.protocol import responses as wire
from maas_sdk.protocol.vocabulary import DEFAULT_GENERATOR
from reference_server.errors import DomainError, InvalidRequest
from reference_server.http.errors import bad_request, not_found
from reference_server.http.ignored import mark_ignored
from reference_server.http.parsing import json_response, parse_body
from reference_server.http.routes import _query
from reference_server.http.routes._responses_input import (
    Item,
    chat_request,
    input_items,
    refuse_unsupported,
    renamed,
)
from reference_server.http.routes._responses_output import (
    ResponseDraft,
    ResponseEvents,
    output_items,
    response_of,
)
from reference_server.http.routes.chat import ChatRun, chat_chunks, collect_chat, start_chat
from reference_server.http.routing import BODY_ERRORS, Param, RouteTable, page_params, path_param
from reference_server.http.sse import error_detail, named_event, sse_response
from reference_server.state import state_of
from reference_server.storage import ResponseRecord

table = RouteTable("responses")

_RESPONSE_ID = re.compile(r"^resp_[0-9a-f]{48}$")
_ID = path_param("response_id", "response")
_INCLUDE = Param("include", "query", {"type": "array", "items": {"type": "string"}}, "Accepted and ignored.")
_DAY = 86400


@dataclass
class ResponseRun:
    """A response submitted to the engine: its draft (id, echoed request), the chat run that
    generates it, the conversation it answers and the request's own input items."""

    draft: ResponseDraft
    chat: ChatRun
    conversation: list[Item]
    input_items: list[Item]


async def _stored(request: Request, response_id: str) -> ResponseRecord | None:
    if not _RESPONSE_ID.match(response_id):
        return None
    record: ResponseRecord | None = await state_of(request).storage.db.get_response(
        response_id, _query.principal(request), int(time.time()))
    return record


async def _previous_conversation(request: Request, body: wire.ResponseCreateRequest) -> list[Item]:
    if body.previous_response_id is None:
        return []
    record = await _stored(request, body.previous_response_id)
    if record is None:
        raise bad_request(f"Previous response with id '{body.previous_response_id}' not found.",
                          param="previous_response_id", code="previous_response_not_found")
    return list(record.conversation)


def _without_oldest(conversation: list[Item]) -> list[Item]:
    """The conversation less its oldest item, and less the call results that then answer nothing."""
    rest = conversation[1:]
    while len(rest) > 1 and rest[0]["type"] == "function_call_output":
        rest = rest[1:]
    return rest


async def start_response(request: Request, body: wire.ResponseCreateRequest) -> ResponseRun:
    """Validate `body`, translate it and submit it to the engine; every error before the first
    token is raised here, as a 4xx naming a Responses parameter. With `truncation: "auto"`, the
    oldest items of a conversation too long for the model's context are dropped until it fits."""
    refuse_unsupported(body)
    own_items = input_items(body)
    conversation = await _previous_conversation(request, body) + own_items
    if not conversation:
        raise bad_request("input must hold at least one item.", param="input")
    while True:
        try:
            chat = await start_chat(request, chat_request(body, conversation))
            break
        except InvalidRequest as exc:
            if body.truncation != "auto" or exc.code != "context_length_exceeded" or len(conversation) <= 1:
                raise renamed(exc) from None
            conversation = _without_oldest(conversation)
        except DomainError as exc:
            raise renamed(exc) from None
    return ResponseRun(ResponseDraft(body), chat, conversation, own_items)


async def _store(request: Request, run: ResponseRun, response: wire.Response) -> None:
    if not run.draft.body.store:
        return
    state = state_of(request)
    record = ResponseRecord(
        id=response.id, owner=_query.principal(request), created_at=response.created_at,
        expires_at=response.created_at + int(state.settings.response_ttl_days * _DAY),
        body=response.model_dump(mode="json"), input_items=run.input_items,
        conversation=run.conversation + output_items(response))
    await state.storage.db.add_response(record)


async def collect_response(request: Request, run: ResponseRun) -> wire.Response:
    """The whole response once generated, stored if the request asked for it."""
    response = response_of(run.draft, await collect_chat(request, run.chat))
    await _store(request, run, response)
    return response


async def response_events(request: Request, run: ResponseRun) -> AsyncIterator[wire.ResponseStreamEvent]:
    """The response as OpenAI's stream of events, stored once complete. A failure after the first
    event ends the stream with `error` and `response.failed`."""
    events = ResponseEvents(run.draft)
    for event in events.start():
        yield event
    try:
        async for chunk in chat_chunks(run.chat, include_usage=True):
            for event in events.feed(chunk):
                yield event
        response, last = events.finish()
        await _store(request, run, response)
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # noqa: BLE001 - told to the client as OpenAI tells it
        last = events.failure(error_detail(exc))
    for event in last:
        yield event


@table.route("POST", "/v1/responses", "Create a model response (OpenAI's Responses API).",
             request=wire.ResponseCreateRequest, response=wire.Response, stream=wire.ResponseStreamEvent,
             errors=BODY_ERRORS,
             example={"model": DEFAULT_GENERATOR, "input": "Say hello.", "max_output_tokens": 16})
async def create_response(request: Request) -> Response:
    body = await parse_body(request, wire.ResponseCreateRequest)
    run = await start_response(request, body)
    if body.stream:
        async def frames() -> AsyncIterator[bytes]:
            async for event in response_events(request, run):
                yield named_event(event.type, event)

        stream = sse_response(frames(), state_of(request).settings.keepalive_seconds, ending=_as_is)
        return mark_ignored(stream, body)
    return mark_ignored(json_response(await collect_response(request, run)), body)


def _as_is(frames: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """A Responses stream ends with its own terminal event (no `[DONE]`), and `response_events`
    turns its failures into its own `error` and `response.failed` events."""
    return frames


async def _owned(request: Request) -> ResponseRecord:
    response_id = request.path_params["response_id"]
    record = await _stored(request, response_id)
    if record is None:
        raise not_found(f"Response with id '{response_id}' not found.", param="response_id")
    return record


@table.route("GET", "/v1/responses/{response_id}", "Retrieve one of your stored responses.",
             response=wire.Response, params=(_ID, _INCLUDE),
             errors=(400, 404))
async def retrieve_response(request: Request) -> Response:
    _query.only(request, "include", "include[]")
    record = await _owned(request)
    return json_response(wire.Response.model_validate(record.body))


@table.route("DELETE", "/v1/responses/{response_id}", "Delete one of your stored responses.",
             response=wire.ResponseDeleted, params=(_ID,), errors=(404,))
async def delete_response(request: Request) -> Response:
    record = await _owned(request)
    if not await state_of(request).storage.db.delete_response(record.id, record.owner):
        raise not_found(f"Response with id '{record.id}' not found.", param="response_id")
    return json_response(wire.ResponseDeleted(id=record.id))


@table.route("GET", "/v1/responses/{response_id}/input_items", "List the input items of one of your stored responses.",
             response=wire.ResponseInputItemList,
             params=(_ID, *page_params(wire.MAX_INPUT_ITEMS_PAGE),
                     Param("order", "query", {"type": "string", "enum": ["asc", "desc"]}, "desc (default): last first."),
                     _INCLUDE),
             errors=(400, 404))
async def list_input_items(request: Request) -> Response:
    _query.only(request, "after", "limit", "order", "include", "include[]")
    limit = _query.limit(request, 20, wire.MAX_INPUT_ITEMS_PAGE)
    order = _query.choice(request, "order", ("asc", "desc"), "desc")
    record = await _owned(request)
    items = record.input_items if order == "asc" else record.input_items[::-1]
    after = _query.after(request)
    if after is not None:
        ids = [item["id"] for item in items]
        if after not in ids:
            raise _query.cursor_not_found(after, "input item of this response")
        items = items[ids.index(after) + 1:]
    page = [wire.ResponseInputItem.model_validate(item) for item in items[:limit]]
    return json_response(wire.ResponseInputItemList(
        data=page, first_id=page[0].id if page else None, last_id=page[-1].id if page else None,
        has_more=len(items) > limit))
