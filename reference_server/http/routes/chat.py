"""`POST /v1/chat/completions` (OpenAI shape): messages rendered with the model's chat template."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from maas_sdk import protocol as p
from maas_sdk.protocol import (
    ChatChoice,
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChatDelta,
    ChatMessage,
    ChunkChatChoice,
)
from maas_sdk.protocol.vocabulary import DEFAULT_GENERATOR
from reference_server.http.errors import bad_request
from reference_server.http.middleware.ratelimit import charge_tokens
from reference_server.http.parsing import json_response, parse_body, served_model
from reference_server.http.routes import _generation as gen
from reference_server.http.routing import BODY_ERRORS, RouteTable
from reference_server.http.sse import event, sse_response
from reference_server.state import state_of

table = RouteTable("generation")



def render_chat(messages: list[ChatMessage], tokenizer: Any) -> list[int]:
    """Token ids of the conversation in the model's chat template, ready for the reply."""
    if getattr(tokenizer, "chat_template", None) is None:
        raise bad_request("This model has no chat template; use /v1/completions.", param="model",
                          code="no_chat_template")
    turns: list[dict[str, str]] = []
    for i, message in enumerate(messages):
        role = "system" if message.role == "developer" else message.role
        if message.content is None and role != "assistant":
            raise bad_request(f"messages[{i}].content is required for role '{message.role}'.",
                              param=f"messages[{i}].content")
        turns.append({"role": role, "content": message.text()})
    try:
        rendered = tokenizer.apply_chat_template(turns, add_generation_prompt=True, tokenize=True)
    except Exception as exc:  # noqa: BLE001 - template rejected the conversation (e.g. role order)
        raise bad_request(f"The model's chat template rejected the messages: {exc}", param="messages") from None
    ids = rendered["input_ids"] if hasattr(rendered, "keys") else rendered
    return [int(t) for t in ids]


@table.route("POST", "/v1/chat/completions", "Generate the next message of a conversation.",
             request=p.ChatCompletionRequest, response=p.ChatCompletion, stream=p.ChatCompletionChunk,
             errors=BODY_ERRORS,
             example={"model": DEFAULT_GENERATOR, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4})
async def create_chat_completion(request: Request) -> Response:
    body = await parse_body(request, ChatCompletionRequest)
    settings = state_of(request).settings
    served = served_model(request, body.model, "generate")
    state_of(request).metrics.watch(served)
    prompt_ids = await state_of(request).thread_work.run(render_chat, body.messages, served.loaded.tokenizer)
    max_tokens = body.max_completion_tokens if body.max_completion_tokens is not None else body.max_tokens
    params = gen.sampling_params(body, max_tokens, len(prompt_ids), served, settings, "messages")
    await charge_tokens(request, len(prompt_ids) + params.max_tokens, "max_tokens")
    (handle,) = gen.submit(served, [prompt_ids], [params])
    completion_id = f"chatcmpl-{uuid.uuid4().hex}"
    created = int(time.time())

    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)

        def chunk(delta: ChatDelta, finish: str | None) -> ChatCompletionChunk:
            return ChatCompletionChunk(
                id=completion_id, created=created, model=body.model,
                choices=[ChunkChatChoice(index=0, delta=delta, finish_reason=finish)],
            )

        async def chunks() -> AsyncIterator[bytes]:
            yield event(chunk(ChatDelta(role="assistant", content=""), None))
            async for _, ev in gen.merged([handle]):
                if ev.text:
                    yield event(chunk(ChatDelta(content=ev.text), None))
                if ev.finish_reason:
                    yield event(chunk(ChatDelta(), ev.finish_reason))
            if include_usage:
                yield event(ChatCompletionChunk(id=completion_id, created=created, model=body.model, choices=[],
                                                usage=gen.usage([handle])))

        return sse_response(chunks(), settings.keepalive_seconds)

    text, finish = await gen.unless_disconnected(request, gen.collect(handle), handle.cancel)
    return json_response(
        ChatCompletion(
            id=completion_id, created=created, model=body.model,
            choices=[ChatChoice(index=0, message=ChatMessage(role="assistant", content=text),
                                finish_reason=finish)],
            usage=gen.usage([handle]),
        )
    )

