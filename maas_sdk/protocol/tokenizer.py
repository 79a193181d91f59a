"""vLLM's tokenizer routes at the server root: `POST /tokenize`, `POST /detokenize` and
`GET /tokenizer_info`, in vLLM's shapes, so clients written for vLLM (lm-evaluation-harness's
remote tokenizer among them) find them. `model` is optional: it defaults to the first
generator served."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field, model_validator

from maas_sdk.protocol.chat import ChatMessage
from maas_sdk.protocol.common import RequestModel, ResponseModel, token_ids


class VLLMTokenizeRequest(RequestModel):
    """Either `prompt` (text) or `messages` (rendered with the chat template first)."""

    SCHEMA_RULES: ClassVar[dict[str, Any]] = {
        "oneOf": [{"properties": {"prompt": {"type": "string"}}, "required": ["prompt"]},
                  {"properties": {"messages": {"type": "array"}}, "required": ["messages"]}],
        "not": {"properties": {"continue_final_message": {"const": True}, "add_generation_prompt": {"const": True}},
                "required": ["continue_final_message", "add_generation_prompt"]},
    }

    model: str | None = None
    prompt: str | None = None
    messages: list[ChatMessage] | None = Field(default=None, json_schema_extra={"minItems": 1})
    add_special_tokens: bool | None = Field(
        default=None, description="Default: true for a prompt, false for messages (the template adds them).")
    add_generation_prompt: bool = True
    continue_final_message: bool = False
    return_token_strs: bool = False

    @model_validator(mode="after")
    def _one_input(self) -> VLLMTokenizeRequest:
        if (self.prompt is None) == (self.messages is None):
            raise ValueError("give exactly one of prompt and messages")
        if self.continue_final_message and self.add_generation_prompt and "add_generation_prompt" in \
                self.model_fields_set:
            raise ValueError("continue_final_message and add_generation_prompt cannot both be true")
        return self


class VLLMTokenizeResponse(ResponseModel):
    count: int
    max_model_len: int
    tokens: list[int]
    token_strs: list[str] | None = None


class VLLMDetokenizeRequest(RequestModel):
    model: str | None = None
    tokens: list[int] = Field(json_schema_extra=token_ids())


class VLLMDetokenizeResponse(ResponseModel):
    prompt: str


class TokenizerInfo(ResponseModel):
    """The tokenizer's configuration, as `tokenizer_config.json` holds it (special tokens as
    strings, the chat template), plus `model` and `vocab_size`."""

    tokenizer_class: str
    model: str | None = None
    vocab_size: int | None = None
    model_max_length: int | None = None
    eos_token: str | None = None
    bos_token: str | None = None
    pad_token: str | None = None
    unk_token: str | None = None
    chat_template: str | None = None
