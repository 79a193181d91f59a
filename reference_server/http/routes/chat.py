"""`POST /v1/chat/completions` (OpenAI shape): messages rendered with the model's chat template."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from maas_sdk.protocol import (
    ChatChoice,
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChatDelta,
    ChatMessage,
    ChunkChatChoice,
)
from reference_server.http.errors import bad_request
from reference_server.http.middleware.ratelimit import charge_tokens
from reference_server.http.parsing import json_response, parse_body
from reference_server.http.routes import _generation as gen
from reference_server.http.routes import _structured
from reference_server.http.routes._tool_calls import ToolCallDeltas, reply_message, turns_with_tools
from reference_server.http.sse import event, sse_response
from reference_server.inference.structured.requests import OutputPlan, plan_chat


def render_chat(messages: list[ChatMessage], tokenizer: Any, plan: OutputPlan | None = None) -> list[int]:
    """Token ids of the conversation in the model's chat template, ready for the reply; with
    the tools and output instructions of `plan` added."""
    if getattr(tokenizer, "chat_template", None) is None:
        raise bad_request("This model has no chat template; use /v1/completions.", param="model",
                          code="no_chat_template")
    for i, message in enumerate(messages):
        if message.content is None and not (message.role == "assistant"):
            raise bad_request(f"messages[{i}].content is required for role '{message.role}'.",
                              param=f"messages[{i}].content")
    turns, template_tools = turns_with_tools(messages, tokenizer, plan or OutputPlan())
    try:
        rendered = tokenizer.apply_chat_template(turns, tools=template_tools, add_generation_prompt=True,
                                                 tokenize=True)
    except Exception as exc:  # noqa: BLE001 - template rejected the conversation (e.g. role order)
        raise bad_request(f"The model's chat template rejected the messages: {exc}", param="messages") from None
    ids = rendered["input_ids"] if hasattr(rendered, "keys") else rendered
    return [int(t) for t in ids]


async def create_chat_completion(request: Request) -> Response:
    body = await parse_body(request, ChatCompletionRequest)
    settings = request.app.state.settings
    served = request.app.state.registry.get_for(body.model, "generate")
    request.app.state.metrics.watch(served)
    plan = plan_chat(body.response_format, body.structured_outputs, body.tools, body.tool_choice,
                     body.parallel_tool_calls)
    constraints = await _structured.constraints(served, plan.spec, 1)
    prompt_ids = render_chat(body.messages, served.loaded.tokenizer, plan)
    max_tokens = body.max_completion_tokens if body.max_completion_tokens is not None else body.max_tokens
    params = gen.sampling_params(body, max_tokens, len(prompt_ids), served, settings, "messages")
    await charge_tokens(request, len(prompt_ids) + params.max_tokens, "max_tokens")
    (handle,) = gen.submit(served, [prompt_ids], [params], constraints)
    completion_id = f"chatcmpl-{uuid.uuid4().hex}"
    created = int(time.time())
    with_tools = plan.tool_choice is not None

    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)

        def chunk(delta: ChatDelta, finish: str | None) -> ChatCompletionChunk:
            return ChatCompletionChunk(
                id=completion_id, created=created, model=body.model,
                choices=[ChunkChatChoice(index=0, delta=delta, finish_reason=finish)],  # type: ignore[arg-type]
            )

        async def chunks() -> AsyncIterator[bytes]:
            yield event(chunk(ChatDelta(role="assistant", content=""), None))
            calls = ToolCallDeltas() if with_tools else None
            async for _, ev in gen.merged([handle]):
                if calls is None:
                    if ev.text:
                        yield event(chunk(ChatDelta(content=ev.text), None))
                else:
                    for delta in calls.feed(ev.text, final=ev.finish_reason is not None):
                        yield event(chunk(delta, None))
                if ev.finish_reason:
                    finish = calls.finish_reason(ev.finish_reason) if calls is not None else ev.finish_reason
                    yield event(chunk(ChatDelta(), finish))
            if include_usage:
                yield event(ChatCompletionChunk(id=completion_id, created=created, model=body.model, choices=[],
                                                usage=gen.usage([handle])))

        return sse_response(chunks(), settings.keepalive_seconds)

    text, finish = await gen.unless_disconnected(request, gen.collect(handle), handle.cancel)
    message, finish = reply_message(text, finish, with_tools)
    return json_response(
        ChatCompletion(
            id=completion_id, created=created, model=body.model,
            choices=[ChatChoice(index=0, message=message, finish_reason=finish)],  # type: ignore[arg-type]
            usage=gen.usage([handle]),
        )
    )


routes = [Route("/v1/chat/completions", create_chat_completion, methods=["POST"])]
