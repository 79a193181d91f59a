"""Structured outputs and tool calling: `response_format`, vLLM's `structured_outputs`,
`tools` / `tool_choice`, and the tool calls of messages and stream deltas (OpenAI's shapes)."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import ConfigDict, Field, model_validator

from maas_sdk.protocol.common import NOT_BLANK, RequestModel, ResponseModel, omitted_if_none


class ResponseFormatText(RequestModel):
    type: Literal["text"]


class ResponseFormatJSONObject(RequestModel):
    """Any JSON object; with `schema` (as Together, Anyscale and instructor send it), one that
    validates against it."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    type: Literal["json_object"]
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")


class JSONSchemaSpec(RequestModel):
    """`response_format.json_schema`: the output must validate against `schema`."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str = Field(default="response", max_length=64)
    description: str | None = None
    schema_: dict[str, Any] = Field(default_factory=dict, alias="schema")
    strict: bool | None = None


class ResponseFormatJSONSchema(RequestModel):
    type: Literal["json_schema"]
    json_schema: JSONSchemaSpec


ResponseFormat = Annotated[
    ResponseFormatText | ResponseFormatJSONObject | ResponseFormatJSONSchema, Field(discriminator="type")
]


class StructuredOutputs(RequestModel):
    """vLLM's extension: exactly one of `choice`, `regex`, `grammar` (EBNF or Lark) or `json`."""

    choice: list[str] | None = Field(default=None, min_length=1, json_schema_extra={"items": {"minLength": 1}})
    regex: str | None = Field(default=None, json_schema_extra={"minLength": 1})
    grammar: str | None = Field(default=None, json_schema_extra={"pattern": NOT_BLANK})
    json_: dict[str, Any] | None = Field(default=None, alias="json")

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    SCHEMA_RULES: ClassVar[dict[str, Any]] = {"oneOf": [{"properties": {name: {"not": {"type": "null"}}}, "required": [name]}
                              for name in ("choice", "regex", "grammar", "json")]}

    @model_validator(mode="after")
    def _exactly_one(self) -> StructuredOutputs:
        given = [k for k in ("choice", "regex", "grammar", "json_") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of choice, regex, grammar, json")
        return self


class FunctionDefinition(RequestModel):
    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class ToolDefinition(RequestModel):
    """A tool the model may call: `{"type": "function", "function": {name, description, parameters}}`."""

    type: Literal["function"] = "function"
    function: FunctionDefinition


class ToolChoiceFunction(RequestModel):
    name: str


class NamedToolChoice(RequestModel):
    """`tool_choice` naming the one function the model must call."""

    type: Literal["function"] = "function"
    function: ToolChoiceFunction


ToolChoice = Literal["none", "auto", "required"] | NamedToolChoice


class FunctionCall(ResponseModel):
    name: str
    arguments: str = Field(description="The arguments as a JSON object, in a string.")


class ToolCall(ResponseModel):
    """A call the assistant made: `.function.arguments` is JSON text (parse it with `json.loads`)."""

    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class FunctionCallDelta(ResponseModel):
    # Members left out when None: stream accumulators (the openai client's among them) merge
    # each delta into the call so far, and a `"type": null` would erase it.
    name: str | None = omitted_if_none()
    arguments: str | None = omitted_if_none()


class ToolCallDelta(ResponseModel):
    """A streamed piece of a tool call: the first for an `index` carries `id` and the name,
    later ones append to `function.arguments`."""

    index: int
    id: str | None = omitted_if_none()
    type: Literal["function"] | None = omitted_if_none()
    function: FunctionCallDelta | None = omitted_if_none()


class StructuredFields(RequestModel):
    """Output constraints shared by completions and chat completions."""

    response_format: ResponseFormat | None = None
    structured_outputs: StructuredOutputs | None = None


class ToolFields(RequestModel):
    """Tool calling, for chat completions. A `tool_choice` other than `none` needs `tools`."""

    SCHEMA_RULES: ClassVar[dict[str, Any]] = {
        "if": {"properties": {"tool_choice": {"not": {"anyOf": [{"const": "none"}, {"type": "null"}]}}},
               "required": ["tool_choice"]},
        "then": {"properties": {"tools": {"type": "array", "minItems": 1}}, "required": ["tools"]},
    }

    tools: list[ToolDefinition] | None = Field(default=None, max_length=128)
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
