"""`POST /v1/messages` and `POST /v1/messages/count_tokens`: Anthropic's Messages API, its
request, reply, stream events and error body, with Anthropic's field and event names.

Request models reject unknown fields like every other request here; the fields Anthropic
documents that the server accepts without acting on (`metadata`, `service_tier`, `thinking`,
...) are listed in `IGNORED` and named back in the `x-maas-ignored-params` header.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, RootModel, model_validator

from maas_sdk.protocol.common import RequestModel, ResponseModel, server_limit, without_models

# Anthropic's sampling range is narrower than OpenAI's: temperature 0 to 1.
MAX_TEMPERATURE = 1.0
MAX_STOP_SEQUENCES = 16  # as Chat Completions, onto which a request translates
TOOL_NAME = r"^[A-Za-z0-9_-]{1,64}$"


def _ignored(**kwargs: Any) -> Any:
    return Field(default=None, description="Accepted and ignored.", **kwargs)


def _or_text(schema: dict[str, Any]) -> None:
    """The JSON Schema of a list of blocks that may also be given as one string, less the image
    and document blocks, which are refused."""
    without_models("UnsupportedBlockParam")(schema)
    listed = {key: schema.pop(key) for key in ("type", "items", "minItems") if key in schema}
    if "anyOf" in schema:  # nullable: the list is one branch
        branches = schema["anyOf"]
        schema["anyOf"] = [{"type": "string"}, *branches]
    else:
        schema["anyOf"] = [{"type": "string"}, listed]


def _blocks(data: Any, name: str) -> Any:
    """`data` with its `name` field, if a string, as the one text block it stands for (so that
    errors inside a list of blocks name the block, not a failed string branch)."""
    if isinstance(data, dict) and isinstance(data.get(name), str):
        return {**data, name: [{"type": "text", "text": data[name]}]}
    return data


class _CacheableBlockParam(RequestModel):
    """A block of a request: its `type` (each kind's literal), and the `cache_control` any block
    may carry, accepted and ignored (the server keeps no prompt cache to steer)."""

    IGNORED: ClassVar[tuple[str, ...]] = ("cache_control",)

    type: str
    cache_control: dict[str, Any] | None = _ignored()


class TextBlockParam(_CacheableBlockParam):
    """Text in a message or in `system`."""

    IGNORED = ("cache_control", "citations")

    type: Literal["text"]
    text: str
    citations: list[dict[str, Any]] | None = _ignored()


class UnsupportedBlockParam(_CacheableBlockParam):
    """An image or document block: understood, and refused with a 400 naming it (the served
    models read text only)."""

    type: Literal["image", "document"]
    source: dict[str, Any]
    title: str | None = None
    context: str | None = None
    citations: dict[str, Any] | None = None


class ToolUseBlockParam(_CacheableBlockParam):
    """A tool call the assistant made earlier in the conversation."""

    type: Literal["tool_use"]
    id: str = Field(min_length=1)
    name: str = Field(min_length=1)
    input: dict[str, Any]


class ToolResultBlockParam(_CacheableBlockParam):
    """What a tool returned, in the user turn after the call."""

    type: Literal["tool_result"]
    tool_use_id: str = Field(min_length=1)
    content: list[Annotated[TextBlockParam | UnsupportedBlockParam, Field(discriminator="type")]] = Field(
        default_factory=list, json_schema_extra=_or_text)
    is_error: bool = False

    @model_validator(mode="before")
    @classmethod
    def _text_is_one_block(cls, data: Any) -> Any:
        return _blocks(data, "content")


class ThinkingBlockParam(RequestModel):
    """Thinking from another server's earlier reply, sent back with it: accepted, left out of
    the prompt (as Anthropic leaves earlier turns' thinking out)."""

    type: Literal["thinking", "redacted_thinking"]
    thinking: str | None = None
    signature: str | None = None
    data: str | None = None


ContentBlockParam = Annotated[
    TextBlockParam | UnsupportedBlockParam | ToolUseBlockParam | ToolResultBlockParam | ThinkingBlockParam,
    Field(discriminator="type"),
]


def _blocks_not(kind: str) -> dict[str, Any]:
    return {"properties": {"content": {"items": {"properties": {"type": {"not": {"const": kind}}}}}}}


class MessageParam(RequestModel):
    """One turn: `content` is a string (one text block) or a list of blocks; tool uses belong in
    assistant turns, tool results in user turns."""

    SCHEMA_RULES: ClassVar[dict[str, Any]] = {
        "if": {"properties": {"role": {"const": "user"}}},
        "then": _blocks_not("tool_use"),
        "else": _blocks_not("tool_result"),
    }

    role: Literal["user", "assistant"]
    content: list[ContentBlockParam] = Field(json_schema_extra=_or_text)

    @model_validator(mode="before")
    @classmethod
    def _text_is_one_block(cls, data: Any) -> Any:
        return _blocks(data, "content")


class ToolParam(RequestModel):
    """A client tool: the model calls it with an `input` valid against `input_schema` (the
    schema is enforced while decoding). Anthropic's server tools (web search, code execution,
    ...) are refused: this server runs no tools itself."""

    IGNORED = ("cache_control", "strict", "input_examples", "defer_loading", "eager_input_streaming")

    type: Literal["custom"] | None = None
    name: str = Field(pattern=TOOL_NAME)
    description: str | None = None
    input_schema: dict[str, Any]
    cache_control: dict[str, Any] | None = _ignored()
    strict: bool | None = _ignored()
    input_examples: list[dict[str, Any]] | None = _ignored()
    defer_loading: bool | None = _ignored()
    eager_input_streaming: bool | None = _ignored()

    @model_validator(mode="before")
    @classmethod
    def _client_tools_only(cls, data: Any) -> Any:
        kind = data.get("type") if isinstance(data, dict) else None
        if kind not in (None, "custom"):
            raise ValueError(f"server tool {kind!r} is not supported; give client tools "
                             f"(name, description, input_schema)")
        return data


class MessagesToolChoice(RequestModel):
    """`auto` (the model decides), `any` (it must call one), `tool` (it must call `name`) or
    `none`; parallel calls are allowed unless `disable_parallel_tool_use`."""

    SCHEMA_RULES: ClassVar[dict[str, Any]] = {
        "if": {"properties": {"type": {"const": "tool"}}},
        "then": {"properties": {"name": {"type": "string"}}, "required": ["name"]},
        "else": {"properties": {"name": {"type": "null"}}},
    }

    type: Literal["auto", "any", "tool", "none"]
    name: str | None = None
    disable_parallel_tool_use: bool = False

    @model_validator(mode="after")
    def _name_with_tool(self) -> MessagesToolChoice:
        if (self.type == "tool") != (self.name is not None):
            raise ValueError("name is required with type 'tool', and only with it")
        return self


class Metadata(RequestModel):
    user_id: str | None = Field(default=None, max_length=256)


class ThinkingConfig(RequestModel):
    """Accepted and ignored: the served models answer without a thinking block."""

    type: Literal["enabled", "adaptive", "disabled"]
    budget_tokens: int | None = None
    display: str | None = None


class JSONOutputFormat(RequestModel):
    """`output_config.format`: the reply's text is JSON valid against `schema` (enforced while
    decoding, like `response_format` in Chat Completions)."""

    type: Literal["json_schema"]
    schema_: dict[str, Any] = Field(alias="schema")


class OutputConfig(RequestModel):
    IGNORED = ("effort",)

    format: JSONOutputFormat | None = None
    effort: str | None = _ignored()


class MessagesPrompt(RequestModel):
    """What a request and a token count share: the conversation and what shapes its prompt."""

    IGNORED: ClassVar[tuple[str, ...]] = ("thinking", "cache_control")
    # A tool_choice other than none needs tools; tools the model may call leave no room for an
    # output format (the reply is then a call or text).
    SCHEMA_RULES: ClassVar[dict[str, Any]] = {"allOf": [
        {"if": {"properties": {"tool_choice": {"properties": {"type": {"not": {"const": "none"}}},
                                               "required": ["type"]}},
                "required": ["tool_choice"]},
         "then": {"properties": {"tools": {"type": "array", "minItems": 1}}, "required": ["tools"]}},
        {"if": {"properties": {"tools": {"type": "array", "minItems": 1}, "tool_choice": {"not": {
                    "type": "object", "properties": {"type": {"const": "none"}}, "required": ["type"]}}},
                "required": ["tools"]},
         "then": {"properties": {"output_config": {"anyOf": [{"type": "null"}, {"properties": {
                    "format": {"type": "null"}}}]}}}},
    ]}

    model: str = Field(min_length=1)
    messages: list[MessageParam] = Field(min_length=1)
    system: list[TextBlockParam] | None = Field(default=None, description="A string, or text blocks.",
                                                json_schema_extra=_or_text)
    tools: list[ToolParam] | None = Field(default=None, max_length=128)
    tool_choice: MessagesToolChoice | None = None
    output_config: OutputConfig | None = None
    thinking: ThinkingConfig | None = _ignored()
    cache_control: dict[str, Any] | None = _ignored()

    @model_validator(mode="before")
    @classmethod
    def _system_text_is_one_block(cls, data: Any) -> Any:
        return _blocks(data, "system")


class MessageCountTokensRequest(MessagesPrompt):
    """`POST /v1/messages/count_tokens`: the prompt's size, without generating."""


class MessageCreateRequest(MessagesPrompt):
    """`POST /v1/messages`. Beyond Anthropic's fields none: the vLLM sampling extras are Chat
    Completions'."""

    IGNORED = ("thinking", "cache_control", "metadata", "service_tier", "inference_geo", "speed", "diagnostics",
               "context_management")

    max_tokens: int = Field(ge=1, json_schema_extra=server_limit(maximum="max_tokens_limit"))
    stop_sequences: list[str] | None = Field(default=None, json_schema_extra={
        "items": {"minLength": 1}, "maxItems": MAX_STOP_SEQUENCES})
    temperature: float = Field(default=1.0, ge=0.0, le=MAX_TEMPERATURE)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    top_k: int | None = Field(default=None, ge=0, description="0 or null disables top-k filtering.")
    stream: bool = False
    metadata: Metadata | None = _ignored()
    service_tier: str | None = _ignored()
    inference_geo: str | None = _ignored()
    speed: str | None = _ignored()
    diagnostics: dict[str, Any] | None = _ignored()
    context_management: dict[str, Any] | None = _ignored()


# ----- the reply -----

StopReason = Literal["end_turn", "max_tokens", "stop_sequence", "tool_use", "pause_turn", "refusal"] | str


class TextBlock(ResponseModel):
    type: Literal["text"] = "text"
    text: str


class ToolUseBlock(ResponseModel):
    """A call of one of the request's tools: `input` is valid against its `input_schema`."""

    type: Literal["tool_use"] = "tool_use"
    id: str
    name: str
    input: dict[str, Any]


ContentBlock = Annotated[TextBlock | ToolUseBlock, Field(discriminator="type")]


class MessagesUsage(ResponseModel):
    input_tokens: int = 0
    output_tokens: int = 0


class Message(ResponseModel):
    """The assistant's reply. `.text` joins its text blocks."""

    id: str
    type: Literal["message"] = "message"
    role: Literal["assistant"] = "assistant"
    content: list[ContentBlock]
    model: str
    stop_reason: StopReason | None = None
    stop_sequence: str | None = None
    usage: MessagesUsage

    @property
    def text(self) -> str:
        return "".join(block.text for block in self.content if isinstance(block, TextBlock))


class MessageTokensCount(ResponseModel):
    input_tokens: int


# ----- stream events (`event: <type>` then `data: <JSON with the same type>`) -----


class MessageStartEvent(ResponseModel):
    type: Literal["message_start"] = "message_start"
    message: Message


class _ContentBlockEvent(ResponseModel):
    """An event about the reply's block at `index` (its `type` is each event's literal)."""

    type: str
    index: int


class ContentBlockStartEvent(_ContentBlockEvent):
    type: Literal["content_block_start"] = "content_block_start"
    content_block: ContentBlock


class TextDelta(ResponseModel):
    type: Literal["text_delta"] = "text_delta"
    text: str


class InputJSONDelta(ResponseModel):
    type: Literal["input_json_delta"] = "input_json_delta"
    partial_json: str


class ContentBlockDeltaEvent(_ContentBlockEvent):
    type: Literal["content_block_delta"] = "content_block_delta"
    delta: Annotated[TextDelta | InputJSONDelta, Field(discriminator="type")]


class ContentBlockStopEvent(_ContentBlockEvent):
    type: Literal["content_block_stop"] = "content_block_stop"


class MessageDelta(ResponseModel):
    stop_reason: StopReason | None = None
    stop_sequence: str | None = None


class MessageDeltaUsage(ResponseModel):
    output_tokens: int


class MessageDeltaEvent(ResponseModel):
    type: Literal["message_delta"] = "message_delta"
    delta: MessageDelta
    usage: MessageDeltaUsage


class MessageStopEvent(ResponseModel):
    type: Literal["message_stop"] = "message_stop"


class PingEvent(ResponseModel):
    type: Literal["ping"] = "ping"


class AnthropicErrorDetail(ResponseModel):
    type: str
    message: str


class AnthropicErrorBody(ResponseModel):
    """`{"type": "error", "error": {"type", "message"}}`: every error of the Messages routes,
    as a response body and as a stream's `error` event."""

    type: Literal["error"] = "error"
    error: AnthropicErrorDetail


StreamEvent = Annotated[
    MessageStartEvent | ContentBlockStartEvent | ContentBlockDeltaEvent | ContentBlockStopEvent
    | MessageDeltaEvent | MessageStopEvent | PingEvent | AnthropicErrorBody,
    Field(discriminator="type"),
]


class MessageStreamEvent(RootModel[StreamEvent]):
    """One event of a Messages stream, sent as `event: <its type>` and `data: <its JSON>`."""
