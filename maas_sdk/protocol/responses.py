"""`/v1/responses`: OpenAI's Responses API, its request, the response object, its input items and
its streamed events.

The input is a string or a list of items: messages (with `input_text` / `output_text` parts),
`function_call` items the model made and the `function_call_output` items answering them. An
output item of one response is a valid input item of the next, so a client can send a
response's `output` back as it got it (the OpenAI Agents SDK does).

Beyond OpenAI's fields the request takes `seed`, as Chat Completions does, for reproducible
sampling.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import ConfigDict, Discriminator, Field, Tag

from maas_sdk.protocol.common import (
    NULL,
    CursorPage,
    ErrorDetail,
    RequestModel,
    ResponseModel,
    branch,
    omitted_if_none,
    server_limit,
    without_models,
)

ItemStatus = Literal["in_progress", "completed", "incomplete"]
# `status` of a response: OpenAI's values; other servers may send others, so any string is accepted.
ResponseStatus = Literal["completed", "failed", "in_progress", "cancelled", "queued", "incomplete"] | str
MAX_METADATA_KEYS = 16
MAX_INPUT_ITEMS_PAGE = 100
FUNCTION_NAME = r"^[A-Za-z0-9_-]{1,64}$"
# The one `include` value served: the logprobs of the output text (`top_logprobs` alternatives each).
LOGPROBS = "message.output_text.logprobs"


def _ignored(**kwargs: Any) -> Any:
    return Field(default=None, description="Accepted and ignored.", **kwargs)


def _refused(what: str, accepted: dict[str, Any] | None = None) -> Any:
    """A field understood but refused: the JSON Schema offers only null (and `accepted`)."""
    return Field(default=None, description=f"Refused with a 400: {what}",
                 json_schema_extra={"anyOf": [accepted, NULL] if accepted else [NULL]})




# ----- input items -----


class InputText(RequestModel):
    type: Literal["input_text"]
    text: str


class InputOutputText(RequestModel):
    """An `output_text` part of an earlier assistant message, sent back as it came."""

    type: Literal["output_text"]
    text: str
    annotations: list[Any] | None = None
    logprobs: list[Any] | None = None


class InputRefusal(RequestModel):
    type: Literal["refusal"]
    refusal: str


class InputMedia(RequestModel):
    """`input_image`, `input_file`, `input_audio`: parsed so that the answer can name the part, and
    refused, since the served models read text only."""

    model_config = ConfigDict(extra="allow")

    type: Literal["input_image", "input_file", "input_audio"]


def _by_type(value: Any) -> str | None:
    kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    return branch(kind) if isinstance(kind, str) else None


def _one_of(kinds: str) -> Discriminator:
    """A discriminator on `type` whose error, for a type not listed, lists the ones that are."""
    return Discriminator(_by_type, custom_error_type="invalid_type",
                         custom_error_message=f"Input should be an object whose type is one of {kinds}")


ContentPart = Annotated[
    Annotated[InputText, Tag(branch("input_text"))]
    | Annotated[InputOutputText, Tag(branch("output_text"))]
    | Annotated[InputRefusal, Tag(branch("refusal"))]
    | Annotated[InputMedia, Tag(branch("input_image"))]
    | Annotated[InputMedia, Tag(branch("input_file"))]
    | Annotated[InputMedia, Tag(branch("input_audio"))],
    _one_of("input_text, output_text, refusal, input_image, input_file, input_audio"),
]


def _text_or_parts(value: Any) -> str:
    return branch("text" if isinstance(value, str) else "parts")


Content = Annotated[
    Annotated[str, Tag(branch("text"))] | Annotated[list[ContentPart], Tag(branch("parts"))],
    Discriminator(_text_or_parts),
]


class MessageItem(RequestModel):
    """A message; `content` is text or parts. `type` may be left out (OpenAI's "easy" message)."""

    type: Literal["message"] = "message"
    role: Literal["user", "assistant", "system", "developer"]
    content: Content = Field(json_schema_extra=without_models("InputMedia"))
    id: str | None = None
    status: ItemStatus | None = None

    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        return "".join(p.text if isinstance(p, (InputText, InputOutputText)) else
                       p.refusal if isinstance(p, InputRefusal) else "" for p in self.content)


class FunctionCallItem(RequestModel):
    """A call the model made (an output item of an earlier response)."""

    type: Literal["function_call"]
    call_id: str = Field(min_length=1)
    name: str
    arguments: str
    id: str | None = None
    status: ItemStatus | None = None


class FunctionCallOutputItem(RequestModel):
    """The caller's result of the call `call_id`."""

    type: Literal["function_call_output"]
    call_id: str = Field(min_length=1)
    output: Content
    id: str | None = None
    status: ItemStatus | None = None

    def text(self) -> str:
        if isinstance(self.output, str):
            return self.output
        return "".join(p.text if isinstance(p, (InputText, InputOutputText)) else "" for p in self.output)


class OtherItem(RequestModel):
    """Any other item type OpenAI defines (`reasoning`, `item_reference`, built-in tool calls, ...):
    parsed so that the answer can name the item, and refused."""

    model_config = ConfigDict(extra="allow")

    type: str


def _item_kind(value: Any) -> str:
    kind = value.get("type", "message") if isinstance(value, dict) else getattr(value, "type", "message")
    return branch(kind if kind in ("message", "function_call", "function_call_output") else "other")


InputItem = Annotated[
    Annotated[MessageItem, Tag(branch("message"))]
    | Annotated[FunctionCallItem, Tag(branch("function_call"))]
    | Annotated[FunctionCallOutputItem, Tag(branch("function_call_output"))]
    | Annotated[OtherItem, Tag(branch("other"))],
    Discriminator(_item_kind),
]


def _input_kind(value: Any) -> str:
    return branch("text" if isinstance(value, str) else "items")


Input = Annotated[
    Annotated[str, Tag(branch("text"))] | Annotated[list[InputItem], Tag(branch("items"))], Discriminator(_input_kind)
]


# ----- tools, tool choice, text format -----


class FunctionTool(RequestModel):
    """A function the model may call: `{"type": "function", "name", "description", "parameters", "strict"}`."""

    IGNORED = ("defer_loading", "allowed_callers", "output_schema")

    type: Literal["function"]
    name: str = Field(pattern=FUNCTION_NAME)
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None
    defer_loading: bool | None = _ignored()
    allowed_callers: list[str] | None = _ignored()
    output_schema: dict[str, Any] | None = _ignored()


class BuiltinTool(RequestModel):
    """A built-in OpenAI tool (`web_search`, `file_search`, `code_interpreter`, ...): refused."""

    model_config = ConfigDict(extra="allow")

    type: str


def _tool_kind(value: Any) -> str:
    kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    return branch("function" if kind == "function" else "builtin")


Tool = Annotated[
    Annotated[FunctionTool, Tag(branch("function"))] | Annotated[BuiltinTool, Tag(branch("builtin"))], Discriminator(_tool_kind)
]


class ToolChoiceFunction(RequestModel):
    """`tool_choice` naming the one function the model must call."""

    type: Literal["function"]
    name: str


class ToolChoiceOther(RequestModel):
    """`allowed_tools`, a built-in tool type, `mcp`, ...: refused."""

    model_config = ConfigDict(extra="allow")

    type: str


def _choice_kind(value: Any) -> str:
    if isinstance(value, str):
        return branch("mode")
    kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    return branch("function" if kind == "function" else "other")


ToolChoice = Annotated[
    Annotated[Literal["none", "auto", "required"], Tag(branch("mode"))]
    | Annotated[ToolChoiceFunction, Tag(branch("function"))]
    | Annotated[ToolChoiceOther, Tag(branch("other"))],
    Discriminator(_choice_kind),
]


class TextFormatText(RequestModel):
    type: Literal["text"]


class TextFormatJSONObject(RequestModel):
    type: Literal["json_object"]


class TextFormatJSONSchema(RequestModel):
    """Output constrained to `schema` (the Responses API puts the schema's fields here directly)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    type: Literal["json_schema"]
    name: str = Field(default="response", max_length=64)
    schema_: dict[str, Any] = Field(alias="schema")
    description: str | None = None
    strict: bool | None = None


TextFormat = Annotated[
    Annotated[TextFormatText, Tag(branch("text"))]
    | Annotated[TextFormatJSONObject, Tag(branch("json_object"))]
    | Annotated[TextFormatJSONSchema, Tag(branch("json_schema"))],
    _one_of("text, json_object, json_schema"),
]


class TextConfig(RequestModel):
    """`text`: the output's `format`; `verbosity` is for reasoning models and ignored."""

    IGNORED = ("verbosity",)

    format: TextFormat | None = None
    verbosity: str | None = _ignored()


class ResponseStreamOptions(RequestModel):
    IGNORED = ("include_obfuscation",)

    include_obfuscation: bool | None = _ignored()


# ----- the request -----


def _input_schema(schema: dict[str, Any]) -> None:
    """`input`: text, or a list of at least one item of the kinds served."""
    without_models("OtherItem")(schema)
    for branch_schema in schema["anyOf"][0]["oneOf"]:
        if branch_schema.get("type") == "array":
            branch_schema["minItems"] = 1


class ResponseCreateRequest(RequestModel):
    """`POST /v1/responses`. Every documented OpenAI field is understood: those in `IGNORED` are
    accepted and named in the `x-maas-ignored-params` header; `background`, `conversation`,
    `prompt`, built-in tools and non-text inputs are refused with a 400 naming them."""

    IGNORED = ("max_tool_calls", "reasoning", "service_tier", "safety_identifier", "prompt_cache_key",
               "prompt_cache_retention", "prompt_cache_options", "context_management", "moderation",
               "user", "access_programs", "background_options", "image")

    # input, unless previous_response_id continues a stored conversation; tool_choice needs tools;
    # tools the model may call leave no room for an output format other than text.
    SCHEMA_RULES: ClassVar[dict[str, Any]] = {"allOf": [
        {"if": {"properties": {"tools": {"type": "array", "minItems": 1}, "tool_choice": {"not": {"const": "none"}}},
                "required": ["tools"]},
         "then": {"properties": {"text": {"anyOf": [NULL, {"properties": {"format": {"anyOf": [
             NULL, {"properties": {"type": {"const": "text"}}}]}}}]}}}},
        {"anyOf": [{"properties": {"input": {"not": NULL}}, "required": ["input"]},
                   {"properties": {"previous_response_id": {"type": "string"}}, "required": ["previous_response_id"]}]},
        {"if": {"properties": {"tool_choice": {"not": {"anyOf": [{"const": "none"}, NULL]}}}, "required": ["tool_choice"]},
         "then": {"properties": {"tools": {"type": "array", "minItems": 1}}, "required": ["tools"]}},
    ]}

    model: str = Field(min_length=1)
    input: Input | None = Field(
        default=None, description="Text, or a list of items; may be left out with previous_response_id.",
        json_schema_extra=_input_schema)
    instructions: str | None = Field(default=None, description="A system message put before the input "
                                     "(not carried over by previous_response_id).")
    max_output_tokens: int | None = Field(default=None, ge=1, json_schema_extra=server_limit(maximum="max_tokens_limit"))
    temperature: float = Field(default=1.0, ge=0.0, le=2.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    seed: int | None = Field(default=None, ge=-(2**63), le=2**64 - 1,
                             description="Extension: the same seed and parameters give the same output.")
    text: TextConfig | None = None
    tools: list[Tool] | None = Field(default=None, max_length=128, json_schema_extra=without_models("BuiltinTool"))
    tool_choice: ToolChoice | None = Field(default=None, json_schema_extra=without_models("ToolChoiceOther"))
    parallel_tool_calls: bool | None = Field(
        default=None, description="true: the model may make several calls in one reply (default: one call, as "
        "Chat Completions on this server; small models given the choice tend to repeat a call).")
    metadata: dict[Annotated[str, Field(max_length=64)], Annotated[str, Field(max_length=512)]] | None = Field(
        default=None, max_length=MAX_METADATA_KEYS, description="Up to 16 string pairs, kept with the response.")
    store: bool = Field(default=True, description="Keep the response for retrieval and previous_response_id.")
    previous_response_id: str | None = Field(default=None, description="Continue the conversation of this stored "
                                             "response: its input and output come before this input.")
    truncation: Literal["auto", "disabled"] = Field(
        default="disabled", description="auto: drop the oldest items when the conversation is too long.")
    stream: bool = False
    stream_options: ResponseStreamOptions | None = None
    background: bool | None = _refused("responses are not run in the background.", {"const": False})
    conversation: str | dict[str, Any] | None = _refused("the Conversations API is not served.")
    prompt: dict[str, Any] | None = _refused("stored prompt templates are not served.")
    include: list[str] | None = Field(
        default=None, description=f"{LOGPROBS!r} returns the logprobs of the output text; the rest is ignored.")
    max_tool_calls: int | None = _ignored()
    reasoning: dict[str, Any] | None = _ignored()
    service_tier: str | None = _ignored()
    safety_identifier: str | None = _ignored()
    prompt_cache_key: str | None = _ignored()
    prompt_cache_retention: str | None = _ignored()
    prompt_cache_options: dict[str, Any] | None = _ignored()
    context_management: list[Any] | None = _ignored()
    moderation: dict[str, Any] | None = _ignored()
    top_logprobs: int | None = Field(default=None, ge=0, le=20,
                                     description="With logprobs: this many most likely alternatives per token.")
    user: str | None = _ignored()
    access_programs: Any = _ignored()
    background_options: Any = _ignored()
    image: Any = _ignored()

    @property
    def logprobs(self) -> bool:
        """Whether the output text's logprobs were asked for (through `include`)."""
        return LOGPROBS in (self.include or [])

    def ignored_params(self) -> list[str]:
        found = super().ignored_params()
        if set(self.include or []) - {LOGPROBS}:
            found.append("include")
        if self.top_logprobs is not None and not self.logprobs:
            found.append("top_logprobs")
        for i, tool in enumerate(self.tools or []):
            if isinstance(tool, FunctionTool):
                found += [f"tools[{i}].{name}" for name in tool.ignored_params()]
        return found


# ----- the response object -----


class OutputText(ResponseModel):
    type: Literal["output_text"] = "output_text"
    text: str
    annotations: list[Any] = Field(default_factory=list)
    logprobs: list[Any] = Field(default_factory=list)


class OutputMessage(ResponseModel):
    """The assistant's text."""

    id: str
    type: Literal["message"] = "message"
    role: Literal["assistant"] = "assistant"
    status: ItemStatus | str = "completed"
    content: list[OutputText] = Field(default_factory=list)

    @property
    def text(self) -> str:
        return "".join(part.text for part in self.content if part.type == "output_text")


class OutputFunctionCall(ResponseModel):
    """A call of one of the request's functions: run it, and send its result back as a
    `function_call_output` item with the same `call_id`."""

    id: str
    type: Literal["function_call"] = "function_call"
    call_id: str
    name: str
    arguments: str = Field(description="The arguments as a JSON object, in a string.")
    status: ItemStatus | str = "completed"


def _other_kind(schema: dict[str, Any]) -> None:
    """An item of another kind is not a message or a function call (`output` items are `oneOf`)."""
    schema["properties"]["type"]["not"] = {"enum": ["message", "function_call"]}


class OutputOther(ResponseModel):
    """An output item of another kind (another server's reasoning, built-in tool calls, ...)."""

    model_config = ConfigDict(json_schema_extra=_other_kind)

    type: str
    id: str | None = None


def _output_kind(value: Any) -> str:
    kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    return branch(kind if kind in ("message", "function_call") else "other")


OutputItem = Annotated[
    Annotated[OutputMessage, Tag(branch("message"))]
    | Annotated[OutputFunctionCall, Tag(branch("function_call"))]
    | Annotated[OutputOther, Tag(branch("other"))],
    Discriminator(_output_kind),
]


class InputTokensDetails(ResponseModel):
    cached_tokens: int = 0


class OutputTokensDetails(ResponseModel):
    reasoning_tokens: int = 0


class ResponseUsage(ResponseModel):
    input_tokens: int = 0
    input_tokens_details: InputTokensDetails = Field(default_factory=InputTokensDetails)
    output_tokens: int = 0
    output_tokens_details: OutputTokensDetails = Field(default_factory=OutputTokensDetails)
    total_tokens: int = 0


class IncompleteDetails(ResponseModel):
    reason: Literal["max_output_tokens", "content_filter"] | str | None = None


class ResponseError(ResponseModel):
    code: str | None = None
    message: str


class ResponseTextConfig(ResponseModel):
    format: dict[str, Any] = Field(default_factory=lambda: {"type": "text"})


class Response(ResponseModel):
    """A model response. `.output_text` is the text of its messages; `.output` also holds the
    `function_call` items the model made."""

    id: str
    object: Literal["response"] = "response"
    created_at: int
    completed_at: int | None = None
    status: ResponseStatus
    error: ResponseError | None = None
    incomplete_details: IncompleteDetails | None = None
    instructions: str | None = None
    max_output_tokens: int | None = None
    model: str
    output: list[OutputItem] = Field(default_factory=list)
    parallel_tool_calls: bool = False
    previous_response_id: str | None = None
    reasoning: dict[str, Any] | None = None
    store: bool = True
    temperature: float | None = None
    text: ResponseTextConfig = Field(default_factory=ResponseTextConfig)
    tool_choice: str | dict[str, Any] = "auto"
    tools: list[dict[str, Any]] = Field(default_factory=list)
    top_p: float | None = None
    top_logprobs: int | None = None
    truncation: str | None = "disabled"
    usage: ResponseUsage | None = None
    user: str | None = None
    metadata: dict[str, str] = Field(default_factory=dict)
    background: bool = False

    @property
    def output_text(self) -> str:
        """The text of every `output_text` part of the output's messages, joined."""
        return "".join(item.text for item in self.output if isinstance(item, OutputMessage))

    @property
    def function_calls(self) -> list[OutputFunctionCall]:
        """The output's `function_call` items, in order."""
        return [item for item in self.output if isinstance(item, OutputFunctionCall)]


class ResponseDeleted(ResponseModel):
    id: str
    object: Literal["response"] = "response"
    deleted: bool = True


class ResponseInputItem(ResponseModel):
    """An item of a stored response's input, as `GET /v1/responses/{id}/input_items` lists it:
    messages (their text parts), `function_call` and `function_call_output` items, each with its id."""

    id: str
    type: str
    role: str | None = omitted_if_none()
    status: str | None = omitted_if_none()
    content: list[dict[str, Any]] | None = omitted_if_none()
    call_id: str | None = omitted_if_none()
    name: str | None = omitted_if_none()
    arguments: str | None = omitted_if_none()
    output: str | list[dict[str, Any]] | None = omitted_if_none()


class ResponseInputItemList(CursorPage[ResponseInputItem]):
    """A page of a stored response's input items."""

    object: Literal["list"] = "list"


# ----- streamed events -----


class ResponseStreamEvent(ResponseModel):
    """One event of a streamed response (its SSE `event:` name is its `type`). Which fields it has
    depends on the type:

    - `response.created`, `response.in_progress`, `response.completed`, `response.incomplete`,
      `response.failed`: `response`, the response so far (whole, at the end);
    - `response.output_item.added` / `.done`: `output_index`, `item`;
    - `response.content_part.added` / `.done`: `item_id`, `output_index`, `content_index`, `part`;
    - `response.output_text.delta` / `.done`: those indexes and `delta` / the whole `text`;
    - `response.function_call_arguments.delta` / `.done`: `item_id`, `output_index` and `delta` /
      the whole `arguments` (and the function's `name`);
    - `error`: `code`, `message`, `param`, and the same in `error` (as OpenAI's servers send it).
    """

    type: str
    sequence_number: int
    response: Response | None = omitted_if_none()
    output_index: int | None = omitted_if_none()
    item: OutputItem | None = omitted_if_none()
    item_id: str | None = omitted_if_none()
    content_index: int | None = omitted_if_none()
    part: OutputText | None = omitted_if_none()
    delta: str | None = omitted_if_none()
    text: str | None = omitted_if_none()
    name: str | None = omitted_if_none()
    arguments: str | None = omitted_if_none()
    logprobs: list[Any] | None = omitted_if_none()
    code: str | None = omitted_if_none()
    message: str | None = omitted_if_none()
    param: str | None = omitted_if_none()
    error: ErrorDetail | None = omitted_if_none()


TERMINAL_EVENTS = frozenset({"response.completed", "response.incomplete", "response.failed"})
