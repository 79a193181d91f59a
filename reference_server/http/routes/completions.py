"""`POST /v1/completions` (OpenAI shape): raw-prompt generation, streamed or not."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from maas_sdk.protocol import CompletionChoice, CompletionRequest, Generation, GenerationChunk
from reference_server.http.errors import bad_request
from reference_server.http.middleware.ratelimit import charge_tokens
from reference_server.http.parsing import json_response, parse_body
from reference_server.http.routes import _generation as gen
from reference_server.http.routes import _structured
from reference_server.http.sse import event, sse_response
from reference_server.inference.structured.requests import plan_output


def tokenize_prompts(prompts: list[str], tokenizer: object) -> list[list[int]]:
    if not prompts:
        raise bad_request("prompt must not be an empty list.", param="prompt")
    ids: list[list[int]] = []
    for prompt in prompts:
        tokens = list(tokenizer(prompt, add_special_tokens=True)["input_ids"])  # type: ignore[operator]
        if not tokens:
            raise bad_request("prompt must not be empty.", param="prompt")
        ids.append(tokens)
    return ids


async def create_completion(request: Request) -> Response:
    body = await parse_body(request, CompletionRequest)
    settings = request.app.state.settings
    served = request.app.state.registry.get_for(body.model, "generate")
    request.app.state.metrics.watch(served)
    plan = plan_output(body.response_format, body.structured_outputs)
    prompts = [body.prompt] if isinstance(body.prompt, str) else body.prompt
    constraints = await _structured.constraints(served, plan.spec, len(prompts))
    prompt_ids = tokenize_prompts(prompts, served.loaded.tokenizer)
    params = [gen.sampling_params(body, body.max_tokens, len(ids), served, settings, "prompt") for ids in prompt_ids]
    await charge_tokens(request, sum(len(ids) + p.max_tokens for ids, p in zip(prompt_ids, params)), "max_tokens")
    handles = gen.submit(served, prompt_ids, params, constraints)
    completion_id = f"cmpl-{uuid.uuid4().hex}"
    created = int(time.time())
    echo = prompts if body.echo else [""] * len(prompts)

    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)

        async def chunks() -> AsyncIterator[bytes]:
            for index, prefix in enumerate(echo):
                if prefix:
                    yield event(_chunk(completion_id, created, body.model, index, prefix, None))
            async for index, ev in gen.merged(handles):
                if ev.text or ev.finish_reason:
                    yield event(_chunk(completion_id, created, body.model, index, ev.text, ev.finish_reason))
            if include_usage:
                yield event(GenerationChunk(id=completion_id, created=created, model=body.model, choices=[],
                                            usage=gen.usage(handles)))

        return sse_response(chunks(), settings.keepalive_seconds)

    async def run_all() -> list[CompletionChoice]:
        choices = []
        for index, handle in enumerate(handles):
            text, finish = await gen.collect(handle)
            choices.append(CompletionChoice(index=index, text=echo[index] + text, finish_reason=finish))
        return choices

    def cancel_all() -> None:
        for handle in handles:
            handle.cancel()

    choices = await gen.unless_disconnected(request, run_all(), cancel_all)
    return json_response(Generation(id=completion_id, created=created, model=body.model, choices=choices,
                                    usage=gen.usage(handles)))


def _chunk(cid: str, created: int, model: str, index: int, text: str, finish: str | None) -> GenerationChunk:
    return GenerationChunk(
        id=cid, created=created, model=model,
        choices=[CompletionChoice(index=index, text=text, finish_reason=finish)],  # type: ignore[arg-type]
    )


routes = [Route("/v1/completions", create_completion, methods=["POST"])]
