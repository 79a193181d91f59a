"""Fine-tuning jobs: request shapes, auto-pagination, bound jobs, and waiting (with a fake job sequence)."""

from __future__ import annotations

import json
import sys
from typing import Any

import httpx
import pytest

from maas_sdk import (
    AsyncBoundFineTuningJob,
    AsyncPager,
    BoundFineTuningJob,
    FineTuningJob,
    FineTuningJobFailed,
    Hyperparameters,
    MaaSError,
    Page,
    WaitTimeoutError,
)

from .fakes import FakeClock, json_response, make_async_client, make_client


def job(job_id: str = "ftjob-1", status: str = "running", **fields: Any) -> dict[str, Any]:
    return {"id": job_id, "created_at": 1, "model": "m", "status": status, "training_file": "file-1", **fields}


class Jobs:
    """A fake jobs API: pages of jobs and events, and a scripted sequence of states for one job."""

    def __init__(self, states: list[dict[str, Any]] | None = None, total: int = 5, page_size: int = 2) -> None:
        self.states = states or [job(status="succeeded")]
        self.all_jobs = [job(f"ftjob-{i}") for i in range(total)]
        self.page_size = page_size
        self.requests: list[httpx.Request] = []
        self.polls = 0

    def _page(self, items: list[dict[str, Any]], request: httpx.Request) -> httpx.Response:
        after = request.url.params.get("after")
        start = 0 if after is None else [item["id"] for item in items].index(after) + 1
        limit = int(request.url.params.get("limit", self.page_size))
        data = items[start : start + limit]
        return json_response({"object": "list", "data": data, "has_more": start + limit < len(items)})

    def __call__(self, request: httpx.Request) -> httpx.Response:
        request.read()
        self.requests.append(request)
        path = request.url.path.removeprefix("/v1/fine_tuning/jobs")
        if path == "" and request.method == "GET":
            return self._page(self.all_jobs, request)
        if path == "" and request.method == "POST":
            return json_response(job(status="queued"))
        if path.endswith("/events"):
            events = [{"id": f"ev-{i}", "created_at": i, "message": f"step {i}"} for i in range(5)]
            return self._page(events, request)
        if path.endswith("/checkpoints"):
            return json_response({"object": "list", "data": [
                {"id": "ckpt-1", "created_at": 1, "fine_tuning_job_id": "ftjob-1", "step_number": 10}]})
        if path.endswith("/cancel"):
            return json_response(job(status="cancelled"))
        state = self.states[min(self.polls, len(self.states) - 1)]
        self.polls += 1
        return json_response(state)


def test_create_sends_only_given_fields() -> None:
    api = Jobs()
    created = make_client(api).fine_tuning.jobs.create(
        model="m", training_file="file-1", hyperparameters=Hyperparameters(n_epochs=2),
        method={"type": "lora", "lora": {"r": 4}}, suffix="demo", validation_file=None,
    )
    assert isinstance(created, BoundFineTuningJob) and created.status == "queued"
    assert json.loads(api.requests[-1].content) == {
        "model": "m", "training_file": "file-1", "hyperparameters": {"n_epochs": 2},
        "method": {"type": "lora", "lora": {"r": 4}}, "suffix": "demo",
    }
    assert "idempotency-key" in api.requests[-1].headers


def test_list_follows_the_cursor_lazily() -> None:
    api = Jobs(total=5)
    page = make_client(api).fine_tuning.jobs.list(limit=2)
    assert isinstance(page, Page)
    assert len(api.requests) == 1  # the first page only; the next ones as iteration reaches them
    assert [j.id for j in page.data] == ["ftjob-0", "ftjob-1"] and page.has_more
    ids = [j.id for j in page]
    assert ids == [f"ftjob-{i}" for i in range(5)]
    assert [r.url.params.get("after") for r in api.requests] == [None, "ftjob-1", "ftjob-3"]
    assert {r.url.params["limit"] for r in api.requests} == {"2"}


def test_list_starts_after_the_given_id_and_stops_early_on_break() -> None:
    api = Jobs(total=5)
    jobs = make_client(api).fine_tuning.jobs
    assert [j.id for j in jobs.list(after="ftjob-2")] == ["ftjob-3", "ftjob-4"]
    api.requests.clear()
    for _ in jobs.list(limit=1):
        break
    assert len(api.requests) == 1


def test_events_are_paginated_too() -> None:
    api = Jobs()
    events = list(make_client(api).fine_tuning.jobs.events("ftjob-1", limit=2))
    assert [e.message for e in events] == [f"step {i}" for i in range(5)]
    assert [r.url.path for r in api.requests] == ["/v1/fine_tuning/jobs/ftjob-1/events"] * 3


def test_retrieve_cancel_checkpoints() -> None:
    api = Jobs(states=[job(status="running")])
    jobs = make_client(api).fine_tuning.jobs
    assert jobs.retrieve("ftjob-1").status == "running"
    cancelled = jobs.cancel("ftjob-1")
    assert cancelled.status == "cancelled"
    assert (api.requests[-1].method, api.requests[-1].url.path) == ("POST", "/v1/fine_tuning/jobs/ftjob-1/cancel")
    assert jobs.checkpoints("ftjob-1").data[0].step_number == 10
    assert [c.id for c in jobs.checkpoints("ftjob-1")] == ["ckpt-1"]


def test_wait_polls_until_success(clock: FakeClock) -> None:
    states = [job(status="queued"), job(step=1, total_steps=3), job(step=2, total_steps=3),
              job(status="succeeded", step=3, total_steps=3, fine_tuned_model="m:ft")]
    api = Jobs(states)
    finished = make_client(api, clock).fine_tuning.jobs.wait("ftjob-1", poll_interval=5)
    assert finished.status == "succeeded" and finished.fine_tuned_model == "m:ft"
    assert api.polls == 4
    assert clock.sleeps == [5, 5, 5]


@pytest.mark.parametrize("final", ["failed", "cancelled"])
def test_wait_raises_when_the_job_fails(final: str, clock: FakeClock) -> None:
    error = {"code": "oom", "message": "out of memory"} if final == "failed" else None
    api = Jobs([job(), job(status=final, error=error)])
    with pytest.raises(FineTuningJobFailed) as info:
        make_client(api, clock).fine_tuning.jobs.wait("ftjob-1")
    assert isinstance(info.value, MaaSError)
    assert info.value.job.status == final
    assert final in str(info.value)
    if error:
        assert "out of memory" in str(info.value)


def test_wait_times_out(clock: FakeClock) -> None:
    api = Jobs([job(step=1, total_steps=9)])
    with pytest.raises(WaitTimeoutError) as info:
        make_client(api, clock).fine_tuning.jobs.wait("ftjob-1", poll_interval=2, timeout=5)
    assert isinstance(info.value, TimeoutError)
    assert isinstance(info.value, MaaSError)
    assert info.value.job.status == "running"
    assert clock.sleeps == [2, 2, 1]  # the last sleep is cut to the deadline
    assert api.polls == 4


def test_wait_rejects_bad_arguments() -> None:
    jobs = make_client(Jobs()).fine_tuning.jobs
    with pytest.raises(ValueError):
        jobs.wait("ftjob-1", poll_interval=0)
    with pytest.raises(ValueError):
        jobs.wait("ftjob-1", timeout=-1)


def test_returned_jobs_can_wait_for_themselves(clock: FakeClock) -> None:
    api = Jobs([job(status="queued"), job(status="running"), job(status="succeeded")])
    client = make_client(api, clock)
    created = client.fine_tuning.jobs.create(model="m", training_file="file-1")
    done = created.wait(poll_interval=1)
    assert done.status == "succeeded"
    assert isinstance(done, BoundFineTuningJob)
    listed = next(iter(client.fine_tuning.jobs.list()))
    assert isinstance(listed, BoundFineTuningJob)
    polls = api.polls
    assert listed.wait(poll_interval=1).status == "succeeded"
    assert api.polls == polls + 1, "a listed job waits through the client that listed it"


def test_a_job_not_from_a_client_cannot_wait() -> None:
    with pytest.raises(RuntimeError, match="client.fine_tuning.jobs.wait"):
        BoundFineTuningJob.model_validate(job()).wait()


def test_progress_bar_follows_steps(clock: FakeClock, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("tqdm")
    states = [job(step=1, total_steps=4), job(step=3, total_steps=4), job(status="succeeded", step=4, total_steps=4)]
    make_client(Jobs(states), clock).fine_tuning.jobs.wait("ftjob-1", progress=True)
    err = capsys.readouterr().err
    assert "ftjob-1" in err
    assert "4/4" in err
    assert "succeeded" in err


def test_progress_without_tqdm_says_how_to_get_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tqdm", None)
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    api = Jobs()
    with pytest.raises(ImportError, match="pip install"):
        make_client(api).fine_tuning.jobs.wait("ftjob-1", progress=True)
    assert api.requests == []


async def test_async_list_and_events_paginate() -> None:
    api = Jobs(total=3)
    jobs = make_async_client(api).fine_tuning.jobs
    pager = jobs.list(limit=2)
    assert isinstance(pager, AsyncPager)
    assert api.requests == []  # the async pager fetches on `await` or `async for`
    listed = [j async for j in pager]
    assert [j.id for j in listed] == ["ftjob-0", "ftjob-1", "ftjob-2"]
    assert all(isinstance(j, AsyncBoundFineTuningJob) for j in listed)
    assert len([e async for e in jobs.events("ftjob-1", limit=2)]) == 5
    first = await jobs.list(limit=2)
    assert [j.id for j in first.data] == ["ftjob-0", "ftjob-1"] and first.has_next_page()
    second = await first.get_next_page()
    assert [j.id for j in second.data] == ["ftjob-2"] and not second.has_next_page()
    assert all(isinstance(j, AsyncBoundFineTuningJob) for j in second.data)


async def test_async_wait_success_failure_and_timeout(clock: FakeClock) -> None:
    api = Jobs([job(status="queued"), job(status="succeeded")])
    client = make_async_client(api, clock)
    created = await client.fine_tuning.jobs.create(model="m", training_file="file-1")
    done = await created.wait(poll_interval=3)
    assert done.status == "succeeded"
    assert clock.sleeps == [3]

    failing = make_async_client(Jobs([job(status="failed")]), clock)
    with pytest.raises(FineTuningJobFailed):
        await failing.fine_tuning.jobs.wait("ftjob-1")

    slow = make_async_client(Jobs([job()]), clock)
    with pytest.raises(WaitTimeoutError):
        await slow.fine_tuning.jobs.wait("ftjob-1", poll_interval=1, timeout=2.5)


def test_plain_protocol_jobs_are_still_jobs() -> None:
    assert issubclass(BoundFineTuningJob, FineTuningJob)
    assert issubclass(AsyncBoundFineTuningJob, FineTuningJob)
