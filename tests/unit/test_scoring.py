"""`client.score(prompt, continuation)`: one echo-logprobs completion, read into a typed `Score`."""

from __future__ import annotations

import json
import math
from typing import Any

import httpx
import pytest

from maas_sdk import BadRequestError, RawResponse, Score

from . import recorded
from .fakes import error_response, make_async_client, make_client


def echoed(tokens: list[str], logprobs: list[float | None], tops: list[dict[str, float] | None] | None
           ) -> dict[str, Any]:
    offsets = [sum(len(t) for t in tokens[:i]) for i in range(len(tokens))]
    return {"id": "cmpl-s", "object": "text_completion", "created": 1, "model": "m", "choices": [{
        "index": 0, "text": "".join(tokens), "finish_reason": "length",
        "logprobs": {"tokens": tokens, "token_logprobs": logprobs, "top_logprobs": tops, "text_offset": offsets}}]}


class Recorder:
    def __init__(self, body: dict[str, Any]) -> None:
        self.body = body
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return httpx.Response(200, json=self.body, headers={"x-request-id": "req-score"})


def test_score_sends_one_echo_request_that_generates_nothing() -> None:
    recorder = Recorder(recorded.VLLM_COMPLETION_ECHO)
    make_client(recorder).score("The sky", " is blue", model="m", extra_headers={"x-a": "1"})
    assert len(recorder.requests) == 1
    assert json.loads(recorder.requests[0].content) == {
        "model": "m", "prompt": "The sky is blue", "echo": True, "max_tokens": 0, "logprobs": 1}
    assert recorder.requests[0].headers["x-a"] == "1"


def test_score_sums_the_continuations_logprobs() -> None:
    score = make_client(Recorder(recorded.VLLM_COMPLETION_ECHO)).score("The sky", " is blue", model="m")
    assert isinstance(score, Score)
    assert score.tokens == [" is", " blue"] and score.token_count == 2
    assert score.token_logprobs == [-1.5, -0.75]
    assert math.isclose(score.logprob, -2.25)
    assert score.is_greedy is True
    assert score.model == "meta-llama/Llama-3.1-8B-Instruct" and score.request_id == "req-score"


def test_a_continuation_token_beaten_by_an_alternative_is_not_greedy() -> None:
    body = echoed(["A", " cat", " sat"], [None, -3.0, -0.5], [None, {" dog": -1.0, " cat": -3.0}, {" sat": -0.5}])
    score = make_client(Recorder(body)).score("A", " cat sat", model="m")
    assert score.tokens == [" cat", " sat"] and score.is_greedy is False
    assert math.isclose(score.logprob, -3.5)


def test_without_alternatives_greediness_is_unknown() -> None:
    body = echoed(["A", " cat"], [None, -3.0], None)
    assert make_client(Recorder(body)).score("A", " cat", model="m").is_greedy is None


def test_a_token_across_the_boundary_counts_as_the_continuations() -> None:
    body = echoed(["Hel", "lo", " there"], [None, -0.2, -1.0], [None, {"lo": -0.2}, {" there": -1.0}])
    score = make_client(Recorder(body)).score("Hell", "o there", model="m")
    assert score.tokens == ["lo", " there"] and math.isclose(score.logprob, -1.2)


def test_bad_input_and_answers_without_logprobs() -> None:
    client = make_client(Recorder(recorded.OPENAI_CHAT_TOOL_CALLS))
    with pytest.raises(ValueError, match="prompt"):
        client.score("", "x", model="m")
    with pytest.raises(ValueError, match="continuation"):
        client.score("x", "", model="m")
    no_logprobs = echoed(["A"], [None], None)
    no_logprobs["choices"][0]["logprobs"] = None
    with pytest.raises(ValueError, match="no logprobs"):
        make_client(Recorder(no_logprobs)).score("A", "b", model="m")
    with pytest.raises(BadRequestError):
        make_client(lambda request: error_response(400, "echo is not supported", param="echo")).score(
            "A", "b", model="m")


def test_raw_score_parses_to_a_score() -> None:
    raw = make_client(Recorder(recorded.VLLM_COMPLETION_ECHO)).with_raw_response.score("The sky", " is blue",
                                                                                        model="m")
    assert isinstance(raw, RawResponse) and raw.request_id == "req-score"
    assert math.isclose(raw.parse().logprob, -2.25)


async def test_async_score() -> None:
    score = await make_async_client(Recorder(recorded.VLLM_COMPLETION_ECHO)).score("The sky", " is blue", model="m")
    assert score.token_logprobs == [-1.5, -0.75] and score.is_greedy is True
