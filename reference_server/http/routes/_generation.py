"""What completions and chat completions share: validating sampling parameters against
the model's context, submitting to the engine, collecting or merging token events, and
dropping the work when the client goes away."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from starlette.requests import Request

from maas_sdk.protocol import SamplingFields, Usage
from reference_server.http.errors import APIError, bad_request
from reference_server.inference.registry import ServedModel
from reference_server.settings import Settings

if TYPE_CHECKING:
    from reference_server.inference.engine.generation import GenerationHandle, TokenEvent
    from reference_server.inference.engine.sampling import SamplingParams
    from reference_server.inference.structured import RowConstraint

T = TypeVar("T")
MAX_STOP_SEQUENCES = 4


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
) -> SamplingParams:
    from reference_server.inference.engine.sampling import SamplingParams

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
    elif max_tokens > room:
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
    return SamplingParams(
        max_tokens=max_tokens,
        temperature=req.temperature,
        top_p=req.top_p,
        top_k=req.top_k or None,
        stop=stop_list(req.stop),
        seed=req.seed,
        min_tokens=req.min_tokens,
        ignore_eos=req.ignore_eos,
        presence_penalty=req.presence_penalty,
        frequency_penalty=req.frequency_penalty,
    )


def submit(
    served: ServedModel,
    prompts: list[list[int]],
    params: list[SamplingParams],
    constraints: Sequence[RowConstraint | None] | None = None,
) -> list[GenerationHandle]:
    """One engine request per prompt, all or none: if the engine refuses one (queue full,
    stopping: mapped to 429/503 by the error handlers), those already admitted are cancelled.
    `constraints` gives each prompt its grammar matcher (or None)."""
    assert served.engine is not None
    handles: list[GenerationHandle] = []
    rows = constraints if constraints is not None else [None] * len(prompts)
    try:
        for ids, p, constraint in zip(prompts, params, rows):
            handles.append(served.engine.submit(ids, p, constraint))
    except BaseException as exc:
        for handle in handles:
            handle.cancel()
        if isinstance(exc, ValueError):
            raise bad_request(str(exc), param="prompt") from None
        raise
    return handles


async def collect(handle: GenerationHandle) -> tuple[str, str | None]:
    parts: list[str] = []
    finish: str | None = None
    async for ev in handle:
        parts.append(ev.text)
        if ev.finish_reason is not None:
            finish = ev.finish_reason
    return "".join(parts), finish


def usage(handles: list[GenerationHandle]) -> Usage:
    prompt = sum(h.prompt_tokens for h in handles)
    completion = sum(h.completion_tokens for h in handles)
    return Usage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion)


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
        raise APIError(499, "The client closed the connection before the answer was ready.",
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
