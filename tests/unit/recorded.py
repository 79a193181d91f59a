"""Replies of OpenAI and vLLM, written from their published API references, for the SDK to parse.

OpenAI: platform.openai.com/docs/api-reference (completions, chat, models, files,
fine-tuning). vLLM: its OpenAI-compatible server's protocol (`stop_reason`,
`prompt_logprobs`, `reasoning_content`, `kv_transfer_params`, ...). Fields this SDK
does not model are there on purpose: the SDK must keep them, not fail on them.
"""

from __future__ import annotations

from typing import Any

OPENAI_COMPLETION_LOGPROBS: dict[str, Any] = {
    "id": "cmpl-uqkvlQyYK7bGYrRHQ0eXlWi7",
    "object": "text_completion",
    "created": 1589478378,
    "model": "gpt-3.5-turbo-instruct",
    "system_fingerprint": "fp_44709d6fcb",
    "choices": [{
        "text": "\n\nThis is",
        "index": 0,
        "logprobs": {
            "tokens": ["\n\n", "This", " is"],
            "token_logprobs": [-0.0221, -0.8843, -0.3312],
            "top_logprobs": [{"\n\n": -0.0221, "\n": -3.9114}, {"This": -0.8843, "The": -1.2207},
                             {" is": -0.3312, " was": -2.0504}],
            "text_offset": [18, 20, 24],
        },
        "finish_reason": "length",
    }],
    "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8},
}

OPENAI_CHAT_LOGPROBS: dict[str, Any] = {
    "id": "chatcmpl-123",
    "object": "chat.completion",
    "created": 1702685778,
    "model": "gpt-4o-mini",
    "choices": [{
        "index": 0,
        "message": {"role": "assistant", "content": "Hello! How", "refusal": None, "annotations": []},
        "logprobs": {
            "content": [
                {"token": "Hello", "logprob": -0.31725305, "bytes": [72, 101, 108, 108, 111], "top_logprobs": [
                    {"token": "Hello", "logprob": -0.31725305, "bytes": [72, 101, 108, 108, 111]},
                    {"token": "Hi", "logprob": -1.3190403, "bytes": [72, 105]}]},
                {"token": "!", "logprob": -0.02380986, "bytes": [33], "top_logprobs": [
                    {"token": "!", "logprob": -0.02380986, "bytes": [33]},
                    {"token": " there", "logprob": -3.787621, "bytes": [32, 116, 104, 101, 114, 101]}]},
                {"token": " How", "logprob": -0.000054669687, "bytes": [32, 72, 111, 119], "top_logprobs": [
                    {"token": " How", "logprob": -0.000054669687, "bytes": [32, 72, 111, 119]},
                    {"token": "<|end|>", "logprob": -10.953937, "bytes": None}]},
            ],
            "refusal": None,
        },
        "finish_reason": "stop",
    }],
    "usage": {
        "prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                      "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0},
    },
    "service_tier": "default",
    "system_fingerprint": "fp_6b68a8204b",
}

OPENAI_CHAT_TOOL_CALLS: dict[str, Any] = {
    "id": "chatcmpl-abc123",
    "object": "chat.completion",
    "created": 1699896916,
    "model": "gpt-4o-mini",
    "choices": [{
        "index": 0,
        "message": {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"id": "call_abc123", "type": "function", "function": {
                "name": "get_current_weather", "arguments": "{\n\"location\": \"Boston, MA\"\n}"}}],
        },
        "logprobs": None,
        "finish_reason": "tool_calls",
    }],
    "usage": {"prompt_tokens": 82, "completion_tokens": 17, "total_tokens": 99},
}

# Azure OpenAI's filtered answer: an OpenAI finish reason and Azure's extra annotations.
OPENAI_CONTENT_FILTER: dict[str, Any] = {
    "id": "chatcmpl-8cmeR",
    "object": "chat.completion",
    "created": 1704316631,
    "model": "gpt-4o",
    "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": {
        "hate": {"filtered": False, "severity": "safe"}}}],
    "choices": [{
        "index": 0,
        "finish_reason": "content_filter",
        "message": {"role": "assistant", "content": None},
        "content_filter_results": {"violence": {"filtered": True, "severity": "medium"}},
    }],
    "usage": {"prompt_tokens": 20, "completion_tokens": 0, "total_tokens": 20},
}

OPENAI_CHAT_CHUNKS: list[dict[str, Any]] = [
    {"id": "chatcmpl-9", "object": "chat.completion.chunk", "created": 1694268190, "model": "gpt-4o-mini",
     "system_fingerprint": "fp_44709d6fcb", "service_tier": "default", "choices": [
         {"index": 0, "delta": {"role": "assistant", "content": "", "refusal": None}, "logprobs": None,
          "finish_reason": None}]},
    {"id": "chatcmpl-9", "object": "chat.completion.chunk", "created": 1694268190, "model": "gpt-4o-mini",
     "system_fingerprint": "fp_44709d6fcb", "choices": [
         {"index": 0, "delta": {"content": "Hi"}, "finish_reason": None, "logprobs": {"content": [
             {"token": "Hi", "logprob": -0.12, "bytes": [72, 105], "top_logprobs": []}], "refusal": None}}]},
    {"id": "chatcmpl-9", "object": "chat.completion.chunk", "created": 1694268190, "model": "gpt-4o-mini",
     "system_fingerprint": "fp_44709d6fcb", "choices": [
         {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}]},
    {"id": "chatcmpl-9", "object": "chat.completion.chunk", "created": 1694268190, "model": "gpt-4o-mini",
     "system_fingerprint": "fp_44709d6fcb", "choices": [],
     "usage": {"prompt_tokens": 8, "completion_tokens": 1, "total_tokens": 9}},
]

# vLLM, `echo: true, logprobs: 1, max_tokens: 1`: the prompt's first token has no logprob.
VLLM_COMPLETION_ECHO: dict[str, Any] = {
    "id": "cmpl-3f1c2a",
    "object": "text_completion",
    "created": 1718000000,
    "model": "meta-llama/Llama-3.1-8B-Instruct",
    "choices": [{
        "index": 0,
        "text": "The sky is blue",
        "logprobs": {
            "text_offset": [0, 3, 7, 10],
            "token_logprobs": [None, -7.25, -1.5, -0.75],
            "tokens": ["The", " sky", " is", " blue"],
            "top_logprobs": [None, {" sky": -7.25, " first": -2.5}, {" is": -1.5}, {" blue": -0.75}],
        },
        "finish_reason": "length",
        "stop_reason": None,
        "prompt_logprobs": None,
    }],
    "usage": {"prompt_tokens": 3, "total_tokens": 4, "completion_tokens": 1, "prompt_tokens_details": None},
    "kv_transfer_params": None,
}

VLLM_CHAT_TOOL_CALLS: dict[str, Any] = {
    "id": "chatcmpl-b1a2",
    "object": "chat.completion",
    "created": 1718000001,
    "model": "Qwen/Qwen2.5-7B-Instruct",
    "choices": [{
        "index": 0,
        "message": {"role": "assistant", "reasoning_content": None, "content": None, "tool_calls": [
            {"id": "chatcmpl-tool-5f2", "type": "function",
             "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]},
        "logprobs": {"content": [{"token": "<tool_call>", "logprob": -0.0001, "bytes": [60, 116],
                                  "top_logprobs": [{"token": "<tool_call>", "logprob": -0.0001, "bytes": [60, 116]}]}]},
        "finish_reason": "tool_calls",
        "stop_reason": None,
    }],
    "usage": {"prompt_tokens": 200, "total_tokens": 220, "completion_tokens": 20, "prompt_tokens_details": None},
    "prompt_logprobs": None,
    "kv_transfer_params": None,
}

VLLM_COMPLETION_CHUNKS: list[dict[str, Any]] = [
    {"id": "cmpl-7", "object": "text_completion", "created": 1718000002, "model": "facebook/opt-125m", "choices": [
        {"index": 0, "text": " Paris", "logprobs": {"text_offset": [22], "token_logprobs": [-0.4],
                                                      "tokens": [" Paris"], "top_logprobs": [{" Paris": -0.4}]},
         "finish_reason": None, "stop_reason": None}]},
    {"id": "cmpl-7", "object": "text_completion", "created": 1718000002, "model": "facebook/opt-125m", "choices": [
        {"index": 0, "text": ".", "logprobs": {"text_offset": [28], "token_logprobs": [-0.9],
                                                "tokens": ["."], "top_logprobs": [{".": -0.9}]},
         "finish_reason": "stop", "stop_reason": 2}]},
]

OPENAI_MODELS: dict[str, Any] = {"object": "list", "data": [
    {"id": "gpt-4o-mini", "object": "model", "created": 1721172741, "owned_by": "system"},
    {"id": "ft:gpt-4o-mini:acme::abc123", "object": "model", "created": 1721172999, "owned_by": "user-abc"},
]}

OPENAI_FILES: dict[str, Any] = {
    "object": "list",
    "data": [{"id": "file-abc123", "object": "file", "bytes": 175, "created_at": 1613677385,
              "expires_at": 1677614202, "filename": "salesOverview.pdf", "purpose": "assistants"}],
    "first_id": "file-abc123", "last_id": "file-abc123", "has_more": False,
}

OPENAI_JOBS: dict[str, Any] = {"object": "list", "has_more": False, "data": [{
    "object": "fine_tuning.job", "id": "ftjob-abc123", "model": "gpt-4o-mini-2024-07-18",
    "created_at": 1721764800, "finished_at": 1721764900, "fine_tuned_model": "ft:gpt-4o-mini:my-org:custom_suffix:id",
    "organization_id": "org-123", "result_files": ["file-abc123"], "status": "succeeded",
    "validation_file": None, "training_file": "file-abc123", "trained_tokens": 5768,
    "hyperparameters": {"n_epochs": "auto", "batch_size": "auto", "learning_rate_multiplier": "auto"},
    "method": {"type": "supervised", "supervised": {"hyperparameters": {
        "batch_size": "auto", "learning_rate_multiplier": "auto", "n_epochs": "auto"}}},
    "integrations": [], "seed": 683058546, "estimated_finish": None, "metadata": {"key": "value"},
    "error": None, "user_provided_suffix": "custom_suffix",
}]}

OPENAI_EVENTS: dict[str, Any] = {"object": "list", "has_more": True, "data": [
    {"object": "fine_tuning.job.event", "id": "ft-event-ddTJfwuMVpfLXseO0Am0Gqjm", "created_at": 1721764800,
     "level": "info", "message": "Fine tuning job successfully completed", "data": None, "type": "message"},
]}

OPENAI_CHECKPOINTS: dict[str, Any] = {
    "object": "list", "first_id": "ftckpt_zc4Q7MP6XxulcVzj4MZdwsAB", "last_id": "ftckpt_zc4Q7MP6XxulcVzj4MZdwsAB",
    "has_more": False, "data": [{
        "object": "fine_tuning.job.checkpoint", "id": "ftckpt_zc4Q7MP6XxulcVzj4MZdwsAB", "created_at": 1721764867,
        "fine_tuned_model_checkpoint": "ft:gpt-4o-mini-2024-07-18:my-org:custom-suffix:96olL566:ckpt-step-2000",
        "metrics": {"full_valid_loss": 0.134, "full_valid_mean_token_accuracy": 0.874},
        "fine_tuning_job_id": "ftjob-abc123", "step_number": 2000}],
}
