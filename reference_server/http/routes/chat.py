"""`POST /v1/chat/completions` (OpenAI shape): messages rendered with the model's chat template,
`n` choices, logprobs with `top_logprobs` alternatives, streamed or not."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response

from maas_sdk import protocol as p
from maas_sdk.protocol import (
    ChatChoice,
    ChatChoiceLogprobs,
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChatDelta,
    ChatMessage,
    ChunkChatChoice,
)
from maas_sdk.protocol.vocabulary import DEFAULT_GENERATOR
from reference_server.http.errors import bad_request
from reference_server.http.ignored import mark_ignored
from reference_server.http.middleware.ratelimit import charge_tokens
from reference_server.http.parsing import json_response, parse_body, served_model
from reference_server.http.routes import _generation as gen
from reference_server.http.routes import _structured
from reference_server.http.routes._logprobs import chat_logprobs
from reference_server.http.routes._tool_calls import ToolCallDeltas, reply_message, turns_with_tools
from reference_server.http.routing import BODY_ERRORS, RouteTable
from reference_server.http.sse import event, sse_response
from reference_server.inference.registry import ServedModel
from reference_server.inference.structured.requests import OutputPlan, plan_chat
from reference_server.inference.token_strings import TokenStrings
from reference_server.state import state_of

if TYPE_CHECKING:
    from reference_server.inference.engine.generation import GenerationHandle

table = RouteTable("generation")


def render_chat(messages: list[ChatMessage], tokenizer: Any, plan: OutputPlan | None = None) -> list[int]:
    """Token ids of the conversation in the model's chat template, ready for the reply; with
    the tools and output instructions of `plan` added."""
    if getattr(tokenizer, "chat_template", None) is None:
        raise bad_request("This model has no chat template; use /v1/completions.", param="model",
                          code="no_chat_template")
    for i, message in enumerate(messages):
        if message.content is None and message.role != "assistant":
            raise bad_request(f"messages[{i}].content is required for role '{message.role}'.",
                              param=f"messages[{i}].content")
    turns, template_tools = turns_with_tools(messages, tokenizer, plan or OutputPlan())
    return apply_template(tokenizer, turns, add_generation_prompt=True, tools=template_tools)


def apply_template(tokenizer: Any, turns: list[dict[str, Any]], *, add_generation_prompt: bool,
                   continue_final_message: bool = False, tools: list[dict[str, Any]] | None = None) -> list[int]:
    rendered = _render(tokenizer, turns, add_generation_prompt=add_generation_prompt,
                       continue_final_message=continue_final_message, tools=tools, tokenize=True)
    ids = rendered["input_ids"] if hasattr(rendered, "keys") else rendered
    return [int(t) for t in ids]


def template_text(tokenizer: Any, turns: list[dict[str, Any]], *, add_generation_prompt: bool,
                  continue_final_message: bool = False) -> str:
    """The conversation rendered by the chat template, as text."""
    return str(_render(tokenizer, turns, add_generation_prompt=add_generation_prompt,
                       continue_final_message=continue_final_message, tools=None, tokenize=False))


def _render(tokenizer: Any, turns: list[dict[str, Any]], **options: Any) -> Any:
    try:
        return tokenizer.apply_chat_template(turns, **options)
    except Exception as exc:  # noqa: BLE001 - template rejected the conversation (e.g. role order)
        raise bad_request(f"The model's chat template rejected the messages: {exc}", param="messages") from None


@dataclass
class ChatRun:
    """A chat completion submitted to the engine: what the Chat Completions route and the APIs
    translated onto it (Responses, Messages) need to collect its choices or stream its chunks."""

    body: ChatCompletionRequest
    served: ServedModel
    prompt_tokens: int
    handles: list[GenerationHandle]
    meter: gen.Meter
    with_tools: bool
    top: int
    strings: TokenStrings
    reply: dict[str, Any] = field(default_factory=dict)


async def start_chat(request: Request, body: ChatCompletionRequest) -> ChatRun:
    """Validate `body` against its model and the server's limits, render the conversation and
    submit its `n` choices; every error before the first token is raised here, as a 4xx."""
    settings = state_of(request).settings
    served = served_model(request, body.model, "generate")
    state_of(request).metrics.watch(served)
    n = gen.choice_count(body.n, settings)
    if body.top_logprobs is not None and not body.logprobs:
        raise bad_request("top_logprobs needs logprobs: true.", param="top_logprobs")
    top = body.top_logprobs or 0
    plan = plan_chat(body.response_format, body.structured_outputs, body.tools, body.tool_choice,
                     body.parallel_tool_calls)
    constraints = await _structured.constraints(served, plan.spec, n)
    prompt_ids = await state_of(request).thread_work.run(render_chat, body.messages, served.loaded.tokenizer, plan)
    max_tokens = body.max_completion_tokens if body.max_completion_tokens is not None else body.max_tokens
    if max_tokens == 0:
        raise bad_request("max_tokens must be at least 1.", param="max_tokens")
    params = gen.sampling_params(body, max_tokens, len(prompt_ids), served, settings, "messages",
                                 logprobs=top if body.logprobs else None)
    await charge_tokens(request, len(prompt_ids) + params.max_tokens * n, "max_tokens")
    handles = gen.submit(served, [prompt_ids] * n, [gen.with_seed(params, j) for j in range(n)], constraints)
    reply = {"id": f"chatcmpl-{uuid.uuid4().hex}", "created": int(time.time()), "model": body.model,
             "system_fingerprint": gen.fingerprint(served)}
    return ChatRun(body=body, served=served, prompt_tokens=len(prompt_ids), handles=handles,
                   meter=gen.Meter(request, served, len(prompt_ids), handles),
                   with_tools=plan.tool_choice is not None, top=top, strings=gen.token_strings(served),
                   reply=reply)


async def chat_chunks(run: ChatRun, *, include_usage: bool) -> AsyncIterator[ChatCompletionChunk]:
    """The run's choices as Chat Completions chunks: a role delta per choice, content or tool-call
    deltas as tokens come, a finish chunk per choice, and a usage chunk last if asked."""
    body, n = run.body, len(run.handles)

    def chunk(index: int, delta: ChatDelta, finish: str | None = None,
              logprobs: ChatChoiceLogprobs | None = None) -> ChatCompletionChunk:
        choice = ChunkChatChoice(index=index, delta=delta, finish_reason=finish, logprobs=logprobs)
        return ChatCompletionChunk(**run.reply, choices=[choice])

    try:
        for index in range(n):
            yield chunk(index, ChatDelta(role="assistant", content=""))
        calls = [ToolCallDeltas() for _ in range(n)] if run.with_tools else None
        async for index, ev in gen.merged(run.handles):
            lps = chat_logprobs(run.strings, ev.logprobs, run.top) if body.logprobs and ev.logprobs else None
            if calls is not None:
                for delta in calls[index].feed(ev.text, final=ev.finish_reason is not None):
                    yield chunk(index, delta)
                if lps is not None:
                    yield chunk(index, ChatDelta(), logprobs=lps)
            elif ev.text or lps is not None:
                yield chunk(index, ChatDelta(content=ev.text), logprobs=lps)
            if ev.finish_reason:
                finish = calls[index].finish_reason(ev.finish_reason) if calls is not None else ev.finish_reason
                yield chunk(index, ChatDelta(), finish)
    finally:
        used = run.meter.close()
    if include_usage:
        yield ChatCompletionChunk(**run.reply, choices=[], usage=used)


async def collect_chat(request: Request, run: ChatRun) -> ChatCompletion:
    """The run's whole reply, once every choice has finished (cancelled if the client goes)."""
    try:
        results = await gen.collect_all(request, run.handles)
    finally:
        used = run.meter.close()
    choices = []
    for j, r in enumerate(results):
        message, finish = reply_message(r.text, r.finish_reason, run.with_tools)
        choices.append(ChatChoice(index=j, message=message, finish_reason=finish,
                                  logprobs=chat_logprobs(run.strings, r.logprobs, run.top)
                                  if run.body.logprobs else None))
    return ChatCompletion(**run.reply, choices=choices, usage=used)


@table.route("POST", "/v1/chat/completions", "Generate the next message of a conversation.",
             request=p.ChatCompletionRequest, response=p.ChatCompletion, stream=p.ChatCompletionChunk,
             errors=BODY_ERRORS,
             example={"model": DEFAULT_GENERATOR, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4})
async def create_chat_completion(request: Request) -> Response:
    body = await parse_body(request, ChatCompletionRequest)
    run = await start_chat(request, body)
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)

        async def events() -> AsyncIterator[bytes]:
            async for item in chat_chunks(run, include_usage=include_usage):
                yield event(item)

        return mark_ignored(sse_response(events(), state_of(request).settings.keepalive_seconds), body)
    return mark_ignored(json_response(await collect_chat(request, run)), body)
