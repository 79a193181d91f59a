"""The wire models' OpenAI rules: null means the default, documented-but-ignored fields are
reported, unknown ones rejected, and the nulls OpenAI leaves out are left out of the JSON."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from maas_sdk.protocol import (
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChatDelta,
    ChatMessage,
    ChunkChatChoice,
    CompletionRequest,
    FineTuneMethod,
    FineTuningJobCreate,
    Generation,
    Hyperparameters,
)


def test_null_means_default_and_unknown_fields_still_fail() -> None:
    req = CompletionRequest.model_validate({"model": "m", "prompt": "x", "n": None, "temperature": None,
                                            "logprobs": None, "stop": None, "echo": None})
    assert (req.n, req.temperature, req.logprobs, req.echo) == (1, 1.0, None, False)
    with pytest.raises(ValidationError) as info:
        CompletionRequest.model_validate({"model": "m", "prompt": "x", "frobnicate": None})
    assert info.value.errors()[0]["type"] == "extra_forbidden"
    with pytest.raises(ValidationError):
        CompletionRequest.model_validate({"model": None, "prompt": "x"})  # required: null is not a value


def test_token_id_prompts_parse_as_ids() -> None:
    assert CompletionRequest.model_validate({"model": "m", "prompt": [1, 2]}).prompt == [1, 2]
    assert CompletionRequest.model_validate({"model": "m", "prompt": [[1], [2, 3]]}).prompt == [[1], [2, 3]]


def test_ignored_params_are_named_nested_too() -> None:
    req = ChatCompletionRequest.model_validate({
        "model": "m", "messages": [{"role": "user", "content": "x"}], "store": False, "metadata": {"a": "b"},
        "service_tier": None, "stream_options": {"include_usage": True, "include_obfuscation": False}})
    assert req.ignored_params() == ["store", "metadata", "stream_options.include_obfuscation"]
    job = FineTuningJobCreate.model_validate({"model": "m", "training_file": "f", "integrations": []})
    assert job.ignored_params() == ["integrations"]


def test_nulls_openai_omits_are_omitted() -> None:
    chunk = ChatCompletionChunk(id="c", created=1, model="m",
                                choices=[ChunkChatChoice(delta=ChatDelta(content="hi"))])
    wire = json.loads(chunk.model_dump_json())
    assert wire["choices"][0]["delta"] == {"content": "hi"}
    assert "usage" not in wire and "system_fingerprint" not in wire
    assert wire["choices"][0]["finish_reason"] is None and wire["choices"][0]["logprobs"] is None  # OpenAI keeps these
    assert json.loads(ChatMessage(role="assistant", content="x").model_dump_json()) == {"role": "assistant",
                                                                                         "content": "x"}


def test_replies_from_other_servers_parse() -> None:
    reply = Generation.model_validate({
        "id": "cmpl-1", "object": "text_completion", "created": 1, "model": "m",
        "choices": [{"index": 0, "text": " Paris", "finish_reason": "content_filter",
                     "logprobs": {"tokens": [" Paris"], "token_logprobs": [-0.1],
                                  "top_logprobs": [{" Paris": -0.1}], "text_offset": [0]}}]})
    assert reply.finish_reason == "content_filter"
    assert reply.choices[0].logprobs is not None and reply.choices[0].logprobs.token_logprobs == [-0.1]


def test_fine_tuning_method_forms() -> None:
    supervised = FineTuneMethod.model_validate({"type": "supervised", "supervised": {
        "hyperparameters": {"n_epochs": "auto", "batch_size": 2}, "training": "lora", "lora": {"r": 4}}})
    assert supervised.training == "lora" and supervised.lora_config is not None and supervised.lora_config.r == 4
    assert supervised.supervised is not None and supervised.supervised.hyperparameters == Hyperparameters(batch_size=2)
    assert FineTuneMethod(type="full").training == "full"
    assert FineTuneMethod(type="dpo").training is None
