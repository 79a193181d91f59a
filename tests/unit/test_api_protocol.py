"""Resources need only the small `SyncAPI` / `AsyncAPI` protocol of their client (request, stream,
clock, with_mode): any object that has it will do, so resources cannot depend on a client's insides."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from maas_sdk import AsyncAPI, BoundFineTuningJob, SyncAPI
from maas_sdk._clock import Clock
from maas_sdk._core import Call, ResponseMode, StreamCall
from maas_sdk._pagination import ListBody
from maas_sdk.protocol import Model
from maas_sdk.resources import AsyncFineTuningJobs, AsyncModels, FineTuningJobs, Models

from .fakes import FakeClock


class Replies:
    """Answers calls from a table of parsed bodies, by method and path, and records them."""

    def __init__(self, clock: FakeClock) -> None:
        self.fake_clock = clock
        self.calls: list[Call[Any]] = []
        self.polls = 0

    def answer(self, call: Call[Any]) -> Any:
        self.calls.append(call)
        if call.path == "/models":
            return ListBody[Model](data=[Model(id="a"), Model(id="b")])
        self.polls += 1
        status = "succeeded" if self.polls >= 3 else "running"
        return call.response_type.model_validate(
            {"id": "ftjob-1", "created_at": 1, "model": "m", "status": status, "training_file": "file-1"})


class RecordingAPI:
    """A `SyncAPI` that is not a client."""

    def __init__(self, replies: Replies) -> None:
        self.replies = replies

    @property
    def clock(self) -> Clock:
        return self.replies.fake_clock.clock()

    def request(self, call: Call[Any], then: Callable[[Any, Any], Any] | None = None) -> Any:
        body = self.replies.answer(call)
        return body if then is None else then(body, self)

    def stream(self, call: StreamCall[Any, Any]) -> Any:
        raise NotImplementedError

    def with_mode(self, mode: ResponseMode) -> RecordingAPI:
        return self


class AsyncRecordingAPI:
    """An `AsyncAPI` that is not a client."""

    def __init__(self, replies: Replies) -> None:
        self.replies = replies

    @property
    def clock(self) -> Clock:
        return self.replies.fake_clock.clock()

    async def request(self, call: Call[Any], then: Callable[[Any, Any], Any] | None = None) -> Any:
        await asyncio.sleep(0)
        body = self.replies.answer(call)
        return body if then is None else then(body, self)

    async def stream(self, call: StreamCall[Any, Any]) -> Any:
        raise NotImplementedError

    def with_mode(self, mode: ResponseMode) -> AsyncRecordingAPI:
        return self


def test_resources_run_on_any_sync_api(clock: FakeClock) -> None:
    replies = Replies(clock)
    api: SyncAPI = RecordingAPI(replies)
    assert [m.id for m in Models(api).list()] == ["a", "b"]
    jobs = FineTuningJobs(api)
    job = jobs.retrieve("ftjob-1")
    assert isinstance(job, BoundFineTuningJob)
    assert job.wait(poll_interval=4).status == "succeeded"
    assert clock.sleeps == [4], "waiting sleeps on the API's clock"
    assert [c.path for c in replies.calls] == ["/models"] + ["/fine_tuning/jobs/ftjob-1"] * 3


async def test_resources_run_on_any_async_api(clock: FakeClock) -> None:
    replies = Replies(clock)
    api: AsyncAPI = AsyncRecordingAPI(replies)
    assert [m.id async for m in AsyncModels(api).list()] == ["a", "b"]
    done = await AsyncFineTuningJobs(api).wait("ftjob-1", poll_interval=2)
    assert done.status == "succeeded" and clock.sleeps == [2, 2]
