"""What completions and chat completions share: validating sampling parameters against
the model's context, deriving each choice's seed, submitting to the engine, collecting or
merging token events, and dropping the work when the client goes away."""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from starlette.requests import Request

from maas_sdk import __version__
from maas_sdk.protocol import SamplingFields, Usage
from maas_sdk.protocol.completions import MAX_STOP_SEQUENCES
from reference_server.http.errors import HTTPError, bad_request
from reference_server.http.middleware.auth import caller_of
from reference_server.inference.registry import ServedModel
from reference_server.inference.token_strings import TokenStrings
from reference_server.settings import Settings
from reference_server.state import state_of

if TYPE_CHECKING:
    from reference_server.inference.engine.generation import GenerationHandle, TokenEvent
    from reference_server.inference.engine.sampling import SamplingParams, TokenLogprob
    from reference_server.inference.structured import RowConstraint

T = TypeVar("T")
_SEED_MASK = (1 << 64) - 1
_SEED_STEP = 0x9E3779B97F4A7C15  # golden-ratio increment: derived seeds share no low bits
_DIGITS = re.compile(r"[0-9]+")  # a token id as a JSON object key (`str.isdigit` also takes "²")


def choice_seed(seed: int | None, index: int) -> int | None:
    """The seed of choice `index`: the request's own for the first, distinct derived ones for the
    others, so `n` seeded choices differ from each other and each is reproducible."""
    if seed is None:
        return None
    return seed if index == 0 else (seed + index * _SEED_STEP) & _SEED_MASK


def choice_count(n: int, settings: Settings, param: str = "n") -> int:
    if n > settings.max_n:
        raise bad_request(f"{param} is {n}; this server allows at most {settings.max_n}.", param=param)
    return n


def fingerprint(served: ServedModel) -> str:
    """`system_fingerprint`: changes when the model or the server version does."""
    digest = hashlib.sha256(f"{served.id}:{served.created}:{__version__}".encode()).hexdigest()
    return f"fp_{digest[:10]}"


def token_strings(served: ServedModel) -> TokenStrings:
    found = served.extra.get("token_strings")
    if not isinstance(found, TokenStrings):
        found = served.extra["token_strings"] = TokenStrings(served.loaded.tokenizer)
    return found


def vocabulary_size(served: ServedModel) -> int:
    return len(served.loaded.tokenizer)


def _token_ids(values: list[int], vocab: int, param: str) -> list[int]:
    for i, t in enumerate(values):
        if not 0 <= t < vocab:
            raise bad_request(f"{param}[{i}] = {t} is not a token id of this model (0 to {vocab - 1}).",
                              param=param, code="invalid_token_id")
    return values


def _logit_bias(bias: dict[str, float] | None, vocab: int) -> dict[int, float]:
    out: dict[int, float] = {}
    for key, value in (bias or {}).items():
        if not _DIGITS.fullmatch(key) or int(key) >= vocab:
            raise bad_request(f"logit_bias key {key!r} is not a token id of this model (0 to {vocab - 1}).",
                              param="logit_bias", code="invalid_token_id")
        if not -100 <= value <= 100:
            raise bad_request(f"logit_bias[{key}] is {value}; biases must be in [-100, 100].", param="logit_bias")
        out[int(key)] = float(value)
    return out


def stop_list(stop: Any | None) -> list[str]:
    if stop is None:
        return []
    stops = [stop] if isinstance(stop, str) else list(stop)
    if len(stops) > MAX_STOP_SEQUENCES:
        raise bad_request(f"At most {MAX_STOP_SEQUENCES} stop sequences are allowed, got {len(stops)}.",
                          param="stop")
    if any(s == "" for s in stops):
        raise bad_request("Stop sequences must not be empty.", param="stop")
    return stops


def sampling_params(
    req: SamplingFields,
    max_tokens: int | None,
    prompt_tokens: int,
    served: ServedModel,
    settings: Settings,
    prompt_param: str,
    *,
    logprobs: int | None = None,
    prompt_logprobs: int | None = None,
) -> SamplingParams:
    """The engine parameters of one choice (its seed is the request's; see `choice_seed`).
    `max_tokens == 0` is accepted only with `prompt_logprobs` (the prompt is scored)."""
    from reference_server.inference.engine.sampling import SamplingParams

    if max_tokens == 0 and prompt_logprobs is None:
        raise bad_request("max_tokens must be at least 1 (0 only with echo and logprobs, to score the prompt).",
                          param="max_tokens")
    context = served.loaded.context_length
    if prompt_tokens >= context:
        raise bad_request(
            f"This model's maximum context length is {context} tokens, and the prompt has "
            f"{prompt_tokens} tokens. Shorten the prompt.",
            param=prompt_param,
            code="context_length_exceeded",
        )
    room = context - prompt_tokens
    if max_tokens is None:
        max_tokens = min(settings.max_tokens_default, room)
    elif max_tokens > settings.max_tokens_limit:
        raise bad_request(
            f"max_tokens is {max_tokens}; this server allows at most {settings.max_tokens_limit}.",
            param="max_tokens",
        )
    elif max_tokens > room and max_tokens > 0:
        raise bad_request(
            f"This model's maximum context length is {context} tokens. However, you requested "
            f"{prompt_tokens + max_tokens} tokens ({prompt_tokens} in the prompt, {max_tokens} for the "
            f"completion). Reduce the prompt or max_tokens.",
            param="max_tokens",
            code="context_length_exceeded",
        )
    if req.min_tokens > max_tokens:
        raise bad_request(f"min_tokens ({req.min_tokens}) must not exceed max_tokens ({max_tokens}).",
                          param="min_tokens")
    vocab = vocabulary_size(served)
    return SamplingParams(
        max_tokens=max_tokens,
        temperature=req.temperature,
        top_p=req.top_p,
        top_k=req.top_k if req.top_k and req.top_k > 0 else None,
        min_p=req.min_p,
        stop=stop_list(req.stop),
        stop_token_ids=_token_ids(list(req.stop_token_ids or []), vocab, "stop_token_ids"),
        seed=req.seed,
        min_tokens=req.min_tokens,
        ignore_eos=req.ignore_eos,
        presence_penalty=req.presence_penalty,
        frequency_penalty=req.frequency_penalty,
        repetition_penalty=req.repetition_penalty,
        logit_bias=_logit_bias(req.logit_bias, vocab),
        logprobs=logprobs,
        prompt_logprobs=prompt_logprobs,
    )


def with_seed(params: SamplingParams, index: int) -> SamplingParams:
    """A copy of `params` for choice `index`, with that choice's derived seed."""
    from dataclasses import replace

    return replace(params, seed=choice_seed(params.seed, index))


def submit(
    served: ServedModel,
    prompts: list[list[int]],
    params: list[SamplingParams],
    constraints: Sequence[RowConstraint | None] | None = None,
    param: str = "prompt",
) -> list[GenerationHandle]:
    """One engine request per prompt, all or none: if the engine refuses one (queue full,
    stopping: mapped to 429/503 by the error handlers), those already admitted are cancelled.
    More prompts than the engine can ever hold at once is a 400, not a 429 to retry forever.
    `constraints` gives each prompt its grammar matcher (or None)."""
    assert served.engine is not None
    capacity = served.engine.max_running + served.engine.max_queued
    if len(prompts) > capacity:
        raise bad_request(
            f"This request needs {len(prompts)} generations (its prompts times n or best_of), more than "
            f"the {capacity} requests the model '{served.id}' can hold at once (running and queued); "
            f"send at most {capacity} per request.",
            param=param, code="too_many_prompts",
        )
    handles: list[GenerationHandle] = []
    rows = constraints if constraints is not None else [None] * len(prompts)
    try:
        for ids, p, constraint in zip(prompts, params, rows):
            handles.append(served.engine.submit(ids, p, constraint, adapter=served.adapter))
    except BaseException:
        for handle in handles:
            handle.cancel()
        raise
    return handles


@dataclass
class Collected:
    """Everything one handle produced."""

    text: str = ""
    finish_reason: str | None = None
    logprobs: list[TokenLogprob] = field(default_factory=list)
    prompt_logprobs: list[TokenLogprob | None] | None = None

    @property
    def cumulative_logprob(self) -> float:
        return sum(lp.logprob for lp in self.logprobs)


async def collect(handle: GenerationHandle) -> Collected:
    out = Collected()
    parts: list[str] = []
    async for ev in handle:
        parts.append(ev.text)
        if ev.logprobs:
            out.logprobs.extend(ev.logprobs)
        if ev.prompt_logprobs is not None:
            out.prompt_logprobs = ev.prompt_logprobs
        if ev.finish_reason is not None:
            out.finish_reason = ev.finish_reason
    out.text = "".join(parts)
    return out


def usage(prompt_tokens: int, handles: list[GenerationHandle]) -> Usage:
    """Prompts count once however many choices they were sampled for (as OpenAI counts them)."""
    completion = sum(h.completion_tokens for h in handles)
    return Usage(prompt_tokens=prompt_tokens, completion_tokens=completion, total_tokens=prompt_tokens + completion)


class Meter:
    """One generation request's use, counted for its API key once, when its answer ends: whole,
    failed, or abandoned by the client (the tokens generated until then are work done). Every
    API served by the generation engines ends its requests through one."""

    def __init__(self, request: Request, served: ServedModel, prompt_tokens: int,
                 handles: list[GenerationHandle]) -> None:
        self._usage = state_of(request).usage
        self._key = caller_of(request).principal
        self._model = served.id
        self.prompt_tokens = prompt_tokens
        self.handles = handles
        self._counted = False

    def close(self) -> Usage:
        """The request's usage, counted the first time this is called."""
        used = usage(self.prompt_tokens, self.handles)
        if not self._counted:
            self._counted = True
            self._usage.record(self._key, self._model, "completions", prompt_tokens=used.prompt_tokens,
                               completion_tokens=used.completion_tokens)
        return used


async def merged(handles: list[GenerationHandle]) -> AsyncIterator[tuple[int, TokenEvent]]:
    """Token events of several handles as `(index, event)`, in arrival order.

    Closing this iterator (the client went away) cancels every handle.
    """
    if len(handles) == 1:
        try:
            async for ev in handles[0]:
                yield 0, ev
        finally:
            handles[0].cancel()
        return
    queue: asyncio.Queue[tuple[int, Any]] = asyncio.Queue()
    end = object()

    async def pump(index: int, handle: GenerationHandle) -> None:
        try:
            async for ev in handle:
                queue.put_nowait((index, ev))
            queue.put_nowait((index, end))
        except BaseException as exc:  # noqa: BLE001 - forwarded to the consumer
            queue.put_nowait((index, exc))

    tasks = [asyncio.create_task(pump(i, h)) for i, h in enumerate(handles)]
    remaining = len(handles)
    try:
        while remaining:
            index, item = await queue.get()
            if item is end:
                remaining -= 1
            elif isinstance(item, BaseException):
                raise item
            else:
                yield index, item
    finally:
        for handle in handles:
            handle.cancel()
        for task in tasks:
            task.cancel()


async def collect_all(request: Request, handles: list[GenerationHandle]) -> list[Collected]:
    """Every handle's whole answer, in order; all of them are cancelled if the client hangs up."""

    async def run_all() -> list[Collected]:
        return [await collect(handle) for handle in handles]

    def cancel_all() -> None:
        for handle in handles:
            handle.cancel()

    return await unless_disconnected(request, run_all(), cancel_all)


async def unless_disconnected(request: Request, work: Awaitable[T], on_disconnect: Callable[[], None]) -> T:
    """Run `work`, but stop it (and call `on_disconnect`) if the client hangs up first, or
    if this request is cancelled (a shutdown ending it).

    The body has been read by now, so the only message left to receive is the disconnect.
    """
    work_task = asyncio.ensure_future(work)
    watch = asyncio.ensure_future(_wait_disconnect(request))
    try:
        done, _ = await asyncio.wait({work_task, watch}, return_when=asyncio.FIRST_COMPLETED)
        if work_task in done:
            return work_task.result()
        # Nobody will read this answer; 499 (as nginx logs it) marks the request in the metrics.
        raise HTTPError(499, "The client closed the connection before the answer was ready.",
                       code="client_disconnected")
    finally:
        watch.cancel()
        if not work_task.done():
            on_disconnect()
            work_task.cancel()


async def _wait_disconnect(request: Request) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return
