"""`POST /v1/completions` (OpenAI shape): generation from a text or token-id prompt, streamed
or not, with `n`/`best_of` choices per prompt, logprobs, and `echo` (with `max_tokens: 0`,
the prompt is only scored: its logprobs come from the engine's prefill)."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response

from maas_sdk import protocol as p
from maas_sdk.protocol import (
    CompletionChoice,
    CompletionLogprobs,
    CompletionRequest,
    Generation,
    GenerationChunk,
)
from maas_sdk.protocol.vocabulary import DEFAULT_GENERATOR
from reference_server.http.errors import bad_request
from reference_server.http.ignored import mark_ignored
from reference_server.http.middleware.ratelimit import charge_tokens
from reference_server.http.parsing import json_response, parse_body, served_model
from reference_server.http.routes import _generation as gen
from reference_server.http.routes import _structured
from reference_server.http.routes._logprobs import CompletionLogprobsBuilder, merge
from reference_server.http.routing import BODY_ERRORS, RouteTable
from reference_server.http.sse import event, sse_response
from reference_server.inference.registry import ServedModel
from reference_server.inference.structured.requests import plan_output
from reference_server.inference.token_strings import TokenStrings
from reference_server.state import state_of

table = RouteTable("generation")


@dataclass
class Prompt:
    ids: list[int]
    text: str


def prompts_of(body: CompletionRequest, served: ServedModel, max_prompts: int) -> list[Prompt]:
    """The prompts as token ids (text is tokenized; ids are checked against the vocabulary)
    and as text (for echo). CPU-heavy for big prompts: run it in a worker thread."""
    tokenizer = served.loaded.tokenizer
    raw = body.prompt
    single = isinstance(raw, str) or bool(raw and all(isinstance(t, int) for t in raw))
    items: list[str | list[int]] = [raw] if single else list(raw)  # type: ignore[list-item, arg-type]
    if not items:
        raise bad_request("prompt must not be an empty list.", param="prompt")
    if len(items) > max_prompts:
        raise bad_request(f"prompt has {len(items)} items; at most {max_prompts} are allowed per call.",
                          param="prompt", code="too_many_prompts")
    vocab = gen.vocabulary_size(served)
    prompts: list[Prompt] = []
    for k, item in enumerate(items):
        where = "prompt" if single else f"prompt[{k}]"
        if isinstance(item, str):
            ids = list(tokenizer(item, add_special_tokens=True)["input_ids"])
            text = item
        else:
            for i, t in enumerate(item):
                if not 0 <= t < vocab:
                    raise bad_request(f"{where}[{i}] = {t} is not a token id of this model (0 to {vocab - 1}).",
                                      param="prompt", code="invalid_token_id")
            ids = item
            text = str(tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False))
        if not ids:
            raise bad_request(f"{where} must not be empty.", param="prompt")
        prompts.append(Prompt(ids, text))
    return prompts


@table.route("POST", "/v1/completions", "Generate text from a prompt.", request=p.CompletionRequest,
             response=p.Generation, stream=p.GenerationChunk, errors=BODY_ERRORS,
             example={"model": DEFAULT_GENERATOR, "prompt": "The capital of France is", "max_tokens": 4})
async def create_completion(request: Request) -> Response:
    body = await parse_body(request, CompletionRequest)
    settings = state_of(request).settings
    served = served_model(request, body.model, "generate")
    state_of(request).metrics.watch(served)
    n = gen.choice_count(body.n, settings)
    best_of = gen.choice_count(body.best_of, settings, "best_of") if body.best_of is not None else n
    if best_of < n:
        raise bad_request(f"best_of ({best_of}) must be at least n ({n}).", param="best_of")
    if body.stream and best_of > n:
        raise bad_request("best_of cannot be streamed: the best choices are known only at the end.",
                          param="best_of")
    if body.max_tokens == 0 and not (body.echo and body.logprobs is not None):
        raise bad_request("max_tokens: 0 scores the prompt; it needs echo: true and logprobs.", param="max_tokens")
    plan = plan_output(body.response_format, body.structured_outputs)
    prompts = await state_of(request).thread_work.run(prompts_of, body, served, settings.max_prompts)
    # Ranking best_of candidates needs each token's logprob, asked for or not.
    logprobs = body.logprobs if body.logprobs is not None else (0 if best_of > n else None)
    prompt_logprobs = body.logprobs if body.echo else None
    base = [gen.sampling_params(body, body.max_tokens, len(pr.ids), served, settings, "prompt",
                                logprobs=logprobs, prompt_logprobs=prompt_logprobs) for pr in prompts]
    await charge_tokens(request, sum(len(pr.ids) + b.max_tokens * best_of for pr, b in zip(prompts, base)),
                        "max_tokens")
    # One engine request per (prompt, candidate); candidate j of prompt i is at i * best_of + j.
    flat = [(i, j) for i in range(len(prompts)) for j in range(best_of)]
    constraints = await _structured.constraints(served, plan.spec, len(flat))
    handles = gen.submit(served, [prompts[i].ids for i, _ in flat], [gen.with_seed(base[i], j) for i, j in flat],
                         constraints)
    meter = gen.Meter(request, served, sum(len(pr.ids) for pr in prompts), handles)
    strings = gen.token_strings(served)
    reply = {"id": f"cmpl-{uuid.uuid4().hex}", "created": int(time.time()), "model": body.model,
             "system_fingerprint": gen.fingerprint(served)}

    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        builders = [CompletionLogprobsBuilder(strings, 0 if body.echo else len(prompts[i].text)) for i, _ in flat]
        started = [False] * len(flat)

        def chunk(index: int, text: str, finish: str | None, lps: CompletionLogprobs | None) -> bytes:
            choice = CompletionChoice(index=index, text=text, finish_reason=finish, logprobs=lps)
            return event(GenerationChunk(**reply, choices=[choice]))

        async def chunks() -> AsyncIterator[bytes]:
            try:
                async for index, ev in gen.merged(handles):
                    prompt = prompts[flat[index][0]]
                    if not started[index]:
                        started[index] = True
                        if body.echo:
                            scored = (builders[index].prompt(prompt.ids, ev.prompt_logprobs)
                                      if ev.prompt_logprobs is not None else None)
                            yield chunk(index, prompt.text, None, scored)
                    lps = builders[index].tokens(ev.logprobs or []) if body.logprobs is not None else None
                    if ev.text or ev.finish_reason or (lps is not None and lps.tokens):
                        yield chunk(index, ev.text, ev.finish_reason, lps)
            finally:
                used = meter.close()
            if include_usage:
                yield event(GenerationChunk(**reply, choices=[], usage=used))

        return mark_ignored(sse_response(chunks(), settings.keepalive_seconds), body)

    try:
        results = await gen.collect_all(request, handles)
    finally:
        used = meter.close()
    choices: list[CompletionChoice] = []
    for i, prompt in enumerate(prompts):
        candidates = list(range(i * best_of, (i + 1) * best_of))
        if best_of > n:
            candidates = sorted(candidates, key=lambda c: -results[c].cumulative_logprob)[:n]
        for c in candidates:
            choices.append(_choice(len(choices), prompt, results[c], body, strings))
    return mark_ignored(json_response(Generation(**reply, choices=choices,
                                                 usage=used)), body)


def _choice(index: int, prompt: Prompt, result: gen.Collected, body: CompletionRequest,
            strings: TokenStrings) -> CompletionChoice:
    text = (prompt.text if body.echo else "") + result.text
    logprobs = None
    if body.logprobs is not None:
        builder = CompletionLogprobsBuilder(strings, 0 if body.echo else len(prompt.text))
        parts = []
        if body.echo and result.prompt_logprobs is not None:
            parts.append(builder.prompt(prompt.ids, result.prompt_logprobs))
        parts.append(builder.tokens(result.logprobs))
        logprobs = merge(parts)
    return CompletionChoice(index=index, text=text, finish_reason=result.finish_reason, logprobs=logprobs)

