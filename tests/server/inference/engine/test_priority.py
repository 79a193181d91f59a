"""Background work (batch lines) on the real generator: interactive requests are admitted and
prefilled first, background rows leave `background_reserve` slots free while interactive
requests keep arriving and fill every slot once they stop, an interactive request that finds
every slot taken preempts a background row (which resumes where it stopped), and output is the
same either way."""

from __future__ import annotations

import asyncio

import pytest

from reference_server.inference.engine import generation
from reference_server.inference.engine.generation import EngineObserver, StepReport
from reference_server.inference.engine.priority import is_background, running_in_background
from reference_server.inference.loading import LoadedModel
from tests.server.inference.engine.support import Result, collect, greedy, running, wait_until

# Real engines under mixed load (about 13 s): make test runs it, make test-fast does not.
pytestmark = pytest.mark.slow


class Steps(EngineObserver):
    def __init__(self) -> None:
        self.rows: list[int] = []

    def on_step(self, report: StepReport) -> None:
        self.rows.append(report.decoded + report.prefilled)


async def test_the_mark_is_scoped_to_its_block() -> None:
    assert not is_background()
    with running_in_background():
        assert is_background()
        assert await asyncio.create_task(asyncio.sleep(0, result=is_background())), "tasks started inside inherit it"
    assert not is_background()


async def test_interactive_requests_are_admitted_before_waiting_background_ones(
    generator: LoadedModel, prompts: list[list[int]], alone: list[Result]
) -> None:
    async with running(generator, max_running=1) as engine:
        with running_in_background():
            first = engine.submit(prompts[0], greedy(16, ignore_eos=True))
            later = engine.submit(prompts[1], greedy())
        interactive = engine.submit(prompts[2], greedy())
        results = await asyncio.gather(collect(first), collect(later), collect(interactive))
        assert interactive.first_token_time is not None and later.first_token_time is not None
        assert interactive.first_token_time < later.first_token_time, "it overtook the waiting batch line"
    assert (results[1].token_ids, results[2].token_ids) == (alone[1].token_ids, alone[2].token_ids)


async def test_background_rows_leave_the_reserve_free_while_interactive_requests_arrive(
    generator: LoadedModel, prompts: list[list[int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(generation, "INTERACTIVE_GRACE_S", 1e9)  # interactive traffic stays "recent"
    steps = Steps()
    async with running(generator, max_running=4, background_reserve=2) as engine:
        await collect(engine.submit(prompts[4], greedy(2)))
        engine.add_observer(steps)
        with running_in_background():
            handles = [engine.submit(p, greedy(6, ignore_eos=True)) for p in prompts[:4]]
        results = await asyncio.gather(*(collect(h) for h in handles))
    assert all(len(r.token_ids) == 6 for r in results), "every background row still runs"
    assert max(steps.rows) == 2


async def test_background_rows_fill_every_slot_with_no_interactive_load(
    generator: LoadedModel, prompts: list[list[int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(generation, "INTERACTIVE_GRACE_S", 0.0)
    steps = Steps()
    async with running(generator, max_running=4, background_reserve=2) as engine:
        engine.add_observer(steps)
        await collect(engine.submit(prompts[4], greedy(2)))
        with running_in_background():
            handles = [engine.submit(p, greedy(6, ignore_eos=True)) for p in prompts[:4]]
        await asyncio.gather(*(collect(h) for h in handles))
    assert max(steps.rows) == 4


async def test_an_interactive_request_preempts_a_background_row_when_every_slot_is_taken(
    generator: LoadedModel, prompts: list[list[int]], alone: list[Result]
) -> None:
    async with running(generator, max_running=2, background_reserve=0) as engine:
        with running_in_background():
            lines = [engine.submit(p, greedy(48, ignore_eos=True)) for p in prompts[:2]]
        await wait_until(lambda: all(h.completion_tokens >= 4 for h in lines))  # both decoding: no slot free
        interactive = engine.submit(prompts[2], greedy())
        answer = await collect(interactive)
        assert all(h.finish_reason is None for h in lines), "it started without waiting for a line to end"
        parked = await asyncio.gather(*(collect(h) for h in lines))
        assert engine.stats()["preemptions"] == 1
    assert answer.token_ids == alone[2].token_ids
    async with running(generator, max_running=1) as fresh:
        unpreempted = [await collect(fresh.submit(p, greedy(48, ignore_eos=True))) for p in prompts[:2]]
    assert [r.token_ids for r in parked] == [r.token_ids for r in unpreempted], "each resumed where it stopped"


class Reports(EngineObserver):
    def __init__(self) -> None:
        self.steps: list[StepReport] = []

    def on_step(self, report: StepReport) -> None:
        self.steps.append(report)


async def test_background_rows_sit_out_the_step_that_starts_an_interactive_request(
    generator: LoadedModel, prompts: list[list[int]], alone: list[Result]
) -> None:
    reports = Reports()
    async with running(generator, max_running=4, background_reserve=0) as engine:
        with running_in_background():
            lines = [engine.submit(p, greedy(40, ignore_eos=True)) for p in prompts[:2]]
        await wait_until(lambda: all(h.completion_tokens >= 2 for h in lines))
        engine.add_observer(reports)
        answer = await collect(engine.submit(prompts[2], greedy()))
        results = await asyncio.gather(*(collect(h) for h in lines))
    prefills = [r for r in reports.steps if r.prefilled]
    assert prefills and all(r.decoded == 0 for r in prefills), "the lines' rows waited one step"
    assert any(r.decoded == 3 for r in reports.steps), "then all three rows decode together"
    assert answer.token_ids == alone[2].token_ids
    assert all(len(r.token_ids) == 40 for r in results)
