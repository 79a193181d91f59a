"""Replies of OpenAI and vLLM (tests/unit/recorded.py) parse through the SDK, typed, with unknown fields kept."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from maas_sdk import ChatCompletion, Generation

from . import recorded
from .fakes import Body, make_async_client, make_client, sse, stream_response


def answering(body: Any) -> Any:
    return lambda request: httpx.Response(200, json=body)


def test_openai_completion_with_logprobs() -> None:
    result = make_client(answering(recorded.OPENAI_COMPLETION_LOGPROBS)).generate("x", model="m", logprobs=1)
    assert isinstance(result, Generation) and result.finish_reason == "length"
    logprobs = result.choices[0].logprobs
    assert logprobs is not None
    assert logprobs.tokens == ["\n\n", "This", " is"]
    assert logprobs.token_logprobs[1] == -0.8843
    assert logprobs.top_logprobs is not None and logprobs.top_logprobs[2] == {" is": -0.3312, " was": -2.0504}
    assert logprobs.text_offset == [18, 20, 24]
    assert result.system_fingerprint == "fp_44709d6fcb"


def test_openai_chat_with_logprobs_keeps_unknown_fields() -> None:
    reply = make_client(answering(recorded.OPENAI_CHAT_LOGPROBS)).chat(
        [{"role": "user", "content": "hi"}], model="m", logprobs=True, top_logprobs=2)
    assert isinstance(reply, ChatCompletion) and reply.text == "Hello! How"
    logprobs = reply.choices[0].logprobs
    assert logprobs is not None and logprobs.refusal is None
    content = logprobs.content
    assert content is not None and [t.token for t in content] == ["Hello", "!", " How"]
    assert content[0].bytes == [72, 101, 108, 108, 111]
    assert [alt.token for alt in content[0].top_logprobs] == ["Hello", "Hi"]
    assert content[2].top_logprobs[1].bytes is None
    assert reply.model_extra is not None and reply.model_extra["service_tier"] == "default"
    assert reply.usage is not None and reply.usage.model_extra == {
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                      "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}}
    assert reply.choices[0].message.model_extra == {"refusal": None, "annotations": []}


@pytest.mark.parametrize("body", [recorded.OPENAI_CHAT_TOOL_CALLS, recorded.VLLM_CHAT_TOOL_CALLS],
                         ids=["openai", "vllm"])
def test_chat_with_tool_calls(body: dict[str, Any]) -> None:
    reply = make_client(answering(body)).chat([{"role": "user", "content": "weather?"}], model="m")
    assert reply.finish_reason == "tool_calls"
    assert reply.text == "" and reply.choices[0].message.content is None
    calls = reply.choices[0].message.model_dump()["tool_calls"]
    assert calls == body["choices"][0]["message"]["tool_calls"]
    assert json.loads(calls[0]["function"]["arguments"])


def test_content_filter_finish_reason_and_extensions() -> None:
    reply = make_client(answering(recorded.OPENAI_CONTENT_FILTER)).chat([{"role": "user", "content": "x"}],
                                                                        model="m")
    assert reply.finish_reason == "content_filter"
    assert reply.model_extra is not None and "prompt_filter_results" in reply.model_extra
    assert reply.choices[0].model_extra == {
        "content_filter_results": {"violence": {"filtered": True, "severity": "medium"}}}


def test_an_unknown_finish_reason_is_kept() -> None:
    body = json.loads(json.dumps(recorded.OPENAI_COMPLETION_LOGPROBS))
    body["choices"][0]["finish_reason"] = "abort"
    assert make_client(answering(body)).generate("x", model="m").finish_reason == "abort"


def test_vllm_echo_logprobs_start_with_null() -> None:
    result = make_client(answering(recorded.VLLM_COMPLETION_ECHO)).generate("x", model="m", echo=True, logprobs=1)
    logprobs = result.choices[0].logprobs
    assert logprobs is not None
    assert logprobs.token_logprobs[0] is None and logprobs.token_logprobs[1:] == [-7.25, -1.5, -0.75]
    assert logprobs.top_logprobs is not None and logprobs.top_logprobs[0] is None
    assert result.choices[0].model_extra == {"stop_reason": None, "prompt_logprobs": None}
    assert result.usage is not None and result.usage.total_tokens == 4


def test_openai_chat_stream_assembles() -> None:
    client = make_client(lambda request: stream_response(Body([sse(*recorded.OPENAI_CHAT_CHUNKS)])))
    stream = client.chat([{"role": "user", "content": "hi"}], model="m", stream=True, logprobs=True)
    chunks = list(stream)
    assert [c.text for c in chunks] == ["", "Hi", "", ""]
    assert chunks[1].choices[0].logprobs is not None
    final = stream.get_final_completion()
    assert final.text == "Hi" and final.finish_reason == "stop"
    assert final.usage is not None and final.usage.total_tokens == 9
    assert final.choices[0].logprobs is not None and final.choices[0].logprobs.content is not None
    assert [t.token for t in final.choices[0].logprobs.content] == ["Hi"]


async def test_vllm_completion_stream_with_logprobs() -> None:
    client = make_async_client(lambda request: stream_response(Body([sse(*recorded.VLLM_COMPLETION_CHUNKS)])))
    stream = await client.generate("x", model="m", stream=True, logprobs=1)
    final = await stream.get_final_completion()
    assert final.text == " Paris." and final.finish_reason == "stop"
    assert final.choices[0].logprobs is not None
    assert final.choices[0].logprobs.tokens == [" Paris", "."]
    assert final.choices[0].logprobs.text_offset == [22, 28]
    assert final.choices[0].model_extra == {"stop_reason": 2}


def test_openai_lists_parse_into_pages() -> None:
    routes = {"/v1/models": recorded.OPENAI_MODELS, "/v1/files": recorded.OPENAI_FILES,
              "/v1/fine_tuning/jobs": recorded.OPENAI_JOBS,
              "/v1/fine_tuning/jobs/ftjob-abc123/events": recorded.OPENAI_EVENTS,
              "/v1/fine_tuning/jobs/ftjob-abc123/checkpoints": recorded.OPENAI_CHECKPOINTS}

    def handler(request: httpx.Request) -> httpx.Response:
        body = routes[request.url.path]
        if request.url.params.get("after"):
            body = {"object": "list", "data": [], "has_more": False}
        return httpx.Response(200, json=body)

    client = make_client(handler)
    assert [m.owned_by for m in client.models.list()] == ["system", "user-abc"]
    files = client.files.list()
    assert [f.filename for f in files] == ["salesOverview.pdf"]
    assert files.data[0].model_extra == {"expires_at": 1677614202}
    job = next(iter(client.fine_tuning.jobs.list()))
    assert job.status == "succeeded" and job.method is not None and job.method["type"] == "supervised"
    assert job.model_extra is not None and job.model_extra["organization_id"] == "org-123"
    assert [e.message for e in client.fine_tuning.jobs.events("ftjob-abc123")] == [
        "Fine tuning job successfully completed"]
    checkpoint = next(iter(client.fine_tuning.jobs.checkpoints("ftjob-abc123")))
    assert checkpoint.step_number == 2000 and checkpoint.metrics["full_valid_loss"] == 0.134
