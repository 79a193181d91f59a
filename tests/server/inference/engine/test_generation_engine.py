"""The continuous-batching generation engine on the real generator: batching never changes greedy
output, finish reasons, stops, seeds, cancellation, bounded queues, failures and shutdown."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

import pytest

from reference_server.inference.engine.errors import GenerationError, QueueFullError
from reference_server.inference.engine.generation import (
    EngineObserver,
    GenerationEngine,
    RequestReport,
    StepReport,
)
from reference_server.inference.engine.sampling import SamplingParams
from reference_server.inference.loading import LoadedModel
from reference_server.inference.structured.constraint import RowConstraint
from tests.server.inference.engine.support import (
    EOS,
    QUESTIONS,
    Result,
    collect,
    greedy,
    running,
    wait_until,
)


async def test_greedy_in_batch_with_late_joiners_matches_alone(
    generator: LoadedModel, prompts: list[list[int]], alone: list[Result]
) -> None:
    async with running(generator) as engine:
        tasks: dict[int, asyncio.Task[Result]] = {}

        def submit(i: int, on_event: Callable[[int], None] | None = None) -> None:
            tasks[i] = asyncio.create_task(collect(engine.submit(prompts[i], greedy()), on_event))

        def joiners(n_events: int) -> None:
            # Later prompts join the running batch at different decode steps.
            if n_events == 2:
                submit(2)
            elif n_events == 5:
                submit(3)
                submit(4)

        submit(0, joiners)
        submit(1)
        await wait_until(lambda: len(tasks) == len(prompts))
        together = [await tasks[i] for i in range(len(prompts))]
        assert engine.stats()["prefills"] >= 3
    for a, b in zip(alone, together):
        assert b.token_ids == a.token_ids
        assert (b.text, b.finish_reason) == (a.text, a.finish_reason)


@pytest.mark.slow  # a long shared prompt prefilled four ways
@pytest.mark.parametrize("reuse", [False, True], ids=["sliced", "sliced+reused"])
async def test_sliced_prefill_and_prefix_reuse_match_alone(
    generator: LoadedModel, chat_prompt: Callable[[str], list[int]], reuse: bool
) -> None:
    """Prompts sharing a long system prompt join a running batch while another decodes: with
    prompts sliced into 16 tokens a step, packed beside the decoding row (and prefixes reused),
    each output equals its output alone."""
    system = "You answer briefly. " + "Background: the lighthouse stands on a rock by the sea. " * 8
    chats = [[int(t) for t in generator.tokenizer.apply_chat_template(
        [{"role": "system", "content": system}, {"role": "user", "content": q}], add_generation_prompt=True,
        return_dict=False)] for q in QUESTIONS[:3]]
    assert len(chats[0]) > 100
    params = greedy(8, ignore_eos=True)
    async with running(generator, prefill_chunk_tokens=0, prefix_cache_bytes=0) as engine:
        reference = [await collect(engine.submit(c, params)) for c in chats]
    recorder = Recorder()
    async with running(generator, prefill_chunk_tokens=16, prefix_cache_bytes=(64 << 20) * reuse) as engine:
        first = await collect(engine.submit(chats[0], params))  # stores the prefix
        long = asyncio.create_task(collect(engine.submit(chat_prompt(QUESTIONS[2]), greedy(80, ignore_eos=True))))
        await wait_until(lambda: engine.stats()["generated_tokens"] > 10)
        engine.add_observer(recorder)
        rest = await asyncio.gather(*(collect(engine.submit(c, params)) for c in chats[1:]))
        await long
        stats = engine.stats()
    assert [r.token_ids for r in [first, *rest]] == [r.token_ids for r in reference]
    prefills = [step for step in recorder.steps if step.prefilled]
    # While another decodes, the prompts ride along its steps, 16 tokens at most per step.
    assert [s.prompt_tokens for s in prefills if s.decoded and s.prompt_tokens > 16] == []
    assert any(s.decoded and s.prefilled for s in prefills)
    if reuse:
        assert stats["prefix_hits"] >= 2 and stats["prefix_hit_tokens"] >= 2 * 100
        assert sum(step.prompt_tokens for step in prefills) < 2 * 40
    else:
        assert stats["prefix_hits"] == 0 and len(prefills) >= 2 * 100 // 16


async def test_eos_finishes_with_stop_and_is_not_text(generator: LoadedModel, alone: list[Result]) -> None:
    first = alone[0]  # "What is the capital of France?" ends well within 20 tokens
    assert first.finish_reason == "stop"
    assert first.token_ids[-1] == EOS
    assert "<|im_end|>" not in first.text and "Paris" in first.text


async def test_ignore_eos_and_min_tokens(
    generator: LoadedModel, prompts: list[list[int]], alone: list[Result]
) -> None:
    eos_at = len(alone[0].token_ids)
    async with running(generator) as engine:
        ignored = await collect(engine.submit(prompts[0], greedy(eos_at + 3, ignore_eos=True)))
        at_least = await collect(engine.submit(prompts[0], greedy(eos_at + 6, min_tokens=eos_at + 2)))
    assert ignored.finish_reason == "length" and len(ignored.token_ids) == eos_at + 3
    assert EOS not in at_least.token_ids[: eos_at + 2]
    assert len(at_least.token_ids) >= eos_at + 2


async def test_max_tokens_finishes_with_length(generator: LoadedModel, prompts: list[list[int]]) -> None:
    async with running(generator) as engine:
        handle = engine.submit(prompts[2], greedy(3))
        result = await collect(handle)
    assert result.finish_reason == "length"
    assert handle.completion_tokens == len(result.token_ids) == 3
    assert handle.prompt_tokens == len(prompts[2])
    assert handle.first_token_time is not None and handle.queue_time is not None


async def test_context_length_ends_with_length(generator: LoadedModel) -> None:
    loaded = LoadedModel(**{**generator.__dict__, "context_length": 24})
    async with running(loaded) as engine:
        with pytest.raises(ValueError, match="context length is 24"):
            engine.submit(list(range(100, 124)), greedy())
        result = await collect(engine.submit(list(range(100, 120)), greedy(50, ignore_eos=True)))
    assert result.finish_reason == "length" and len(result.token_ids) == 4


async def test_stop_sequence_cuts_text(
    generator: LoadedModel, prompts: list[list[int]], alone: list[Result]
) -> None:
    full = alone[2].text  # "Count from 1 to 10." runs to max_tokens
    stop = full[9:13]
    assert full.find(stop) == 9, "pick a stop string that occurs first at this offset"
    async with running(generator) as engine:
        result = await collect(engine.submit(prompts[2], greedy(stop=["never-appears", stop])))
    assert result.finish_reason == "stop"
    assert result.text == full[:9]
    assert len(result.token_ids) < len(alone[2].token_ids)


@pytest.mark.slow
async def test_seed_makes_sampling_reproducible(generator: LoadedModel, prompts: list[list[int]]) -> None:
    def params(seed: int) -> SamplingParams:
        return SamplingParams(
            max_tokens=12, temperature=1.0, top_p=0.95, top_k=50, seed=seed, ignore_eos=True
        )

    async with running(generator) as engine:
        first = await collect(engine.submit(prompts[1], params(7)))
        # Same seed inside a batch with other requests, and a different seed.
        again, other, _ = await asyncio.gather(
            collect(engine.submit(prompts[1], params(7))),
            collect(engine.submit(prompts[1], params(8))),
            collect(engine.submit(prompts[3], greedy(12))),
        )
    assert again.token_ids == first.token_ids
    assert other.token_ids != first.token_ids


async def test_cancel_frees_the_slot_for_a_waiting_request(
    generator: LoadedModel, prompts: list[list[int]]
) -> None:
    async with running(generator, max_running=1, max_queued=4) as engine:
        long = engine.submit(prompts[1], greedy(500, ignore_eos=True))
        long_events = long.__aiter__()
        await long_events.__anext__()
        short = engine.submit(prompts[0], greedy(3))
        short_task = asyncio.create_task(collect(short))
        await long_events.__anext__()
        await long_events.__anext__()
        assert engine.stats()["running"] == 1 and engine.stats()["waiting"] == 1
        assert short.first_token_time is None

        long.cancel()
        long.cancel()  # idempotent
        result = await asyncio.wait_for(short_task, 20)
        assert result.finish_reason == "length"
        assert long.finish_reason == "cancelled" and long.completion_tokens < 500
        # Events produced before the cancel took effect may still be queued; then the iterator just ends.
        assert all(ev.finish_reason is None for ev in [e async for e in long_events])

        # Closing an iterator early (a client going away) cancels its request too.
        third = engine.submit(prompts[2], greedy(500, ignore_eos=True))
        events = third.__aiter__()
        await events.__anext__()
        await events.aclose()
        await wait_until(lambda: third.finish_reason == "cancelled")
        await wait_until(lambda: engine.stats()["running"] == 0)
        assert engine.stats()["cancelled"] == 2


async def test_queue_full_and_bad_prompts_raise_at_once(
    generator: LoadedModel, prompts: list[list[int]]
) -> None:
    async with running(generator, max_running=1, max_queued=1) as engine:
        a = engine.submit(prompts[0], greedy(200, ignore_eos=True))
        b = engine.submit(prompts[1], greedy(200, ignore_eos=True))
        with pytest.raises(QueueFullError):
            engine.submit(prompts[2], greedy())
        with pytest.raises(ValueError, match="empty"):
            engine.submit([], greedy())
        with pytest.raises(ValueError, match="context length is 8192"):
            engine.submit([1] * 8192, greedy())
        with pytest.raises(ValueError, match="vocabulary"):
            engine.submit([10**7], greedy())
        a.cancel()
        b.cancel()
        await wait_until(lambda: engine.stats()["running"] + engine.stats()["waiting"] == 0)


class PausingConstraint(RowConstraint):
    """Allows every token; the first time the engine asks whether it is done (while sampling a
    sequence's first token) it holds the engine thread until the test lets it go."""

    def __init__(self) -> None:
        super().__init__(matcher=None)
        self.paused = threading.Event()
        self.resume = threading.Event()
        self.asked = 0

    def accept(self, token: int) -> bool:
        return True

    @property
    def terminated(self) -> bool:
        self.asked += 1
        if self.asked == 1:
            self.paused.set()
            self.resume.wait(30)
            return True  # nothing to mask for this row
        return False


async def test_a_sequence_between_prefill_and_decode_still_counts_against_the_bound(
    generator: LoadedModel, prompts: list[list[int]]
) -> None:
    """The engine moves a sequence whose prompt is done from prefill to decode while requests
    arrive: at no point in that move may it go uncounted, or a full engine admits more than
    `max_running + max_queued` and a request that should be refused waits instead."""
    constraint = PausingConstraint()
    async with running(generator, max_running=1, max_queued=1) as engine:
        first = engine.submit(prompts[0], greedy(50, ignore_eos=True), constraint)
        try:
            await wait_until(constraint.paused.is_set)
            assert engine.stats()["running"] == 1
            second = engine.submit(prompts[1], greedy(50, ignore_eos=True))
            with pytest.raises(QueueFullError):
                engine.submit(prompts[2], greedy())
            assert engine.stats()["running"] + engine.stats()["waiting"] == 2
        finally:
            constraint.resume.set()
        first.cancel()
        second.cancel()
        await wait_until(lambda: engine.stats()["running"] + engine.stats()["waiting"] == 0)


class Recorder(EngineObserver):
    def __init__(self) -> None:
        self.steps: list[StepReport] = []
        self.requests: list[RequestReport] = []

    def on_step(self, report: StepReport) -> None:
        self.steps.append(report)

    def on_request_done(self, report: RequestReport) -> None:
        self.requests.append(report)


async def test_sampling_failure_fails_only_that_request(
    generator: LoadedModel, prompts: list[list[int]], alone: list[Result]
) -> None:
    broken = SamplingParams(max_tokens=8, temperature=0.7)
    broken.top_k = "not a number"  # type: ignore[assignment]  # passes validation, then breaks the sampler
    recorder = Recorder()
    async with running(generator) as engine:
        engine.add_observer(recorder)
        bad = engine.submit(prompts[1], broken)
        good = engine.submit(prompts[0], greedy())
        with pytest.raises(GenerationError, match="generation failed"):
            await collect(bad)
        assert (await collect(good)).token_ids == alone[0].token_ids
        after = await collect(engine.submit(prompts[4], greedy()))
        assert after.token_ids == alone[4].token_ids
        assert engine.stats()["failed"] == 1
    assert bad.finish_reason == "error"
    assert [r.finish_reason for r in recorder.requests].count("error") == 1
    assert any(s.prefilled for s in recorder.steps) and any(s.decoded for s in recorder.steps)
    done = [r for r in recorder.requests if r.finish_reason == "stop"]
    assert all(
        r.time_to_first_token_s is not None and len(r.inter_token_latencies_s) == r.completion_tokens - 1
        for r in done
    )


async def test_stopped_engine_fails_pending_requests(
    generator: LoadedModel, prompts: list[list[int]]
) -> None:
    engine = GenerationEngine(generator, max_running=1)
    engine.start()
    handle = engine.submit(prompts[1], greedy(500, ignore_eos=True))
    await engine.stop()
    with pytest.raises(RuntimeError, match="stopped"):
        await collect(handle)
    with pytest.raises(RuntimeError, match="not running"):
        engine.submit(prompts[0], greedy())




@pytest.mark.slow
async def test_with_nothing_decoding_prompts_are_prefilled_a_chunk_a_step(
    generator: LoadedModel, prompts: list[list[int]], alone: list[Result]
) -> None:
    """An idle engine holds a burst of prompts to the same per-step budget as a busy one, so
    the first outputs start after one short step instead of one forward over every prompt;
    the outputs are those of each prompt alone."""
    recorder = Recorder()
    async with running(generator, prefill_chunk_tokens=16) as engine:
        engine.add_observer(recorder)
        handles = [engine.submit(p, greedy()) for p in prompts]
        results = [await collect(h) for h in handles]
    idle = [s for s in recorder.steps if not s.decoded]
    assert idle and all(0 < s.prompt_tokens <= 16 for s in idle)
    assert sum(s.prompt_tokens for s in recorder.steps) == sum(len(p) for p in prompts)
    assert [r.token_ids for r in results] == [a.token_ids for a in alone]


@pytest.mark.slow
async def test_a_short_prompt_gets_its_own_step_before_a_longer_one_submitted_first(
    generator: LoadedModel, prompts: list[list[int]], chat_prompt: Callable[[str], list[int]], alone: list[Result]
) -> None:
    """While another sequence decodes, a long prompt and then a short one arrive together: the
    short one is prefilled first and alone (beside the long one it would wait for the long
    one's prefill as well), the long one in the next step; outputs are those of each alone."""
    long_prompt = chat_prompt("Summarise this. " + "The lighthouse keeper counted the ships each night. " * 30)
    short = prompts[4]
    assert len(long_prompt) > 300 > 4 * len(short)
    async with running(generator, prefill_chunk_tokens=0, prefix_cache_bytes=0) as engine:
        long_alone = await collect(engine.submit(long_prompt, greedy(8)))
    recorder = Recorder()
    async with running(generator, prefix_cache_bytes=0) as engine:
        busy = asyncio.create_task(collect(engine.submit(prompts[3], greedy(200, ignore_eos=True))))
        await wait_until(lambda: engine.stats()["generated_tokens"] > 5)
        engine.add_observer(recorder)
        late = [engine.submit(long_prompt, greedy(8)), engine.submit(short, greedy())]
        long_result, short_result = [await collect(h) for h in late]
        busy.cancel()
    with_prompts = [s.prompt_tokens for s in recorder.steps if s.prefilled]
    assert with_prompts[:2] == [len(short), len(long_prompt)]
    assert short_result.token_ids == alone[4].token_ids
    assert long_result.token_ids == long_alone.token_ids


@pytest.mark.slow
async def test_prompts_still_start_while_a_long_prompt_is_sliced_first(
    generator: LoadedModel, prompts: list[list[int]], chat_prompt: Callable[[str], list[int]], alone: list[Result]
) -> None:
    """A long prompt prefilled in slices, which has waited long enough to go first in every
    step, does not hold back a whole prompt that arrives meanwhile: that prompt's first token
    comes before the long prompt's, not after its last slice."""
    long_prompt = chat_prompt("Summarise this. " + "The lighthouse keeper counted the ships each night. " * 30)
    medium = prompts[3]
    assert len(long_prompt) > 300 and 16 < len(medium) <= 64
    loop = asyncio.get_running_loop()
    first: dict[str, float] = {}

    def stamp(name: str) -> Callable[[int], None]:
        return lambda n: first.setdefault(name, loop.time())

    async with running(generator, prefill_chunk_tokens=64, prefix_cache_bytes=0) as engine:
        busy = asyncio.create_task(collect(engine.submit(prompts[2], greedy(400, ignore_eos=True))))
        await wait_until(lambda: engine.stats()["generated_tokens"] > 5)
        long_task = asyncio.create_task(collect(engine.submit(long_prompt, greedy(4)), stamp("long")))
        await wait_until(lambda: engine.stats()["prompt_tokens"] > len(prompts[2]) + 32)  # slicing has begun
        await asyncio.sleep(0.4)  # long enough waited to go before a newcomer
        medium_result = await collect(engine.submit(medium, greedy()), stamp("medium"))
        await long_task
        busy.cancel()
    assert first["medium"] < first["long"]
    assert medium_result.token_ids == alone[3].token_ids
