"""From a request's `response_format`, `structured_outputs`, `tools` and `tool_choice` to what
the generation needs: the grammar to enforce, and what to tell the model in its prompt.

The schema is put into the prompt as well as into the grammar: a small model that is only
constrained writes valid but empty values (`{"name": ""}`); told the schema, it fills them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from reference_server.inference.structured import specs, tools
from reference_server.inference.structured.errors import ConstraintError
from reference_server.inference.structured.specs import GrammarSpec

# Larger schemas are left out of the prompt (a 135M model's context is 8k tokens).
MAX_PROMPT_SCHEMA_CHARS = 8000


@dataclass
class OutputPlan:
    """`spec`: the grammar (None: free text). `instruction`: text for the system prompt.
    `functions`/`tool_choice`: the tools offered (empty / None when tools are off)."""

    spec: GrammarSpec | None = None
    instruction: str | None = None
    functions: list[tools.Function] = field(default_factory=list)
    tool_choice: tools.Choice | None = None


def plan_output(response_format: Any, structured_outputs: Any) -> OutputPlan:
    """The plan for `response_format` / `structured_outputs` (protocol models or None)."""
    if structured_outputs is not None:
        if response_format is not None and response_format.type != "text":
            raise ConstraintError("Give either response_format or structured_outputs, not both.",
                                  param="structured_outputs")
        return _structured_outputs(structured_outputs)
    if response_format is None or response_format.type == "text":
        return OutputPlan()
    if response_format.type == "json_object":
        if response_format.schema_ is not None:
            schema = response_format.schema_
            return OutputPlan(specs.json_schema(schema, "response_format.schema"), _schema_instruction(schema))
        return OutputPlan(specs.json_object("response_format"), "Answer with a JSON object only.")
    schema = response_format.json_schema.schema_
    spec = specs.json_schema(schema, "response_format.json_schema.schema")
    return OutputPlan(spec, _schema_instruction(schema))


def plan_chat(response_format: Any, structured_outputs: Any, tool_defs: Any, tool_choice: Any,
              parallel_tool_calls: bool | None) -> OutputPlan:
    """The plan for a chat request: tools (unless `tool_choice` is "none") or output format."""
    output = plan_output(response_format, structured_outputs)
    if not tool_defs:
        if tool_choice is not None and tool_choice != "none":
            raise ConstraintError("tool_choice needs tools.", param="tool_choice")
        return output
    if tool_choice == "none":
        if output.spec is None:
            output.spec = tools.text_only_grammar()
        return output
    fns = tools.functions(tool_defs)
    choice: tools.Choice = "auto"
    offered = fns
    if tool_choice is not None and not isinstance(tool_choice, str):
        name = tool_choice.function.name
        offered = [f for f in fns if f.name == name]
        if not offered:
            raise ConstraintError(f"tool_choice names function {name!r}, which is not in tools.",
                                  param="tool_choice")
        choice = "required"
    elif tool_choice == "required":
        choice = "required"
    if output.spec is not None:
        raise ConstraintError("response_format and structured_outputs cannot be combined with tools "
                              "unless tool_choice is 'none'.", param="response_format")
    spec = tools.call_grammar(offered, choice, parallel=parallel_tool_calls is True)
    return OutputPlan(spec, tools.system_prompt(offered, choice), fns, choice)


def _structured_outputs(so: Any) -> OutputPlan:
    if so.choice is not None:
        options = ", ".join(so.choice)
        return OutputPlan(specs.choice(so.choice, "structured_outputs.choice"), f"Answer with one of: {options}.")
    if so.regex is not None:
        return OutputPlan(specs.regex(so.regex, "structured_outputs.regex"))
    if so.grammar is not None:
        return OutputPlan(specs.grammar(so.grammar, "structured_outputs.grammar"))
    return OutputPlan(specs.json_schema(so.json_, "structured_outputs.json"), _schema_instruction(so.json_))


def _schema_instruction(schema: Any) -> str:
    text = json.dumps(schema, ensure_ascii=False)
    if len(text) > MAX_PROMPT_SCHEMA_CHARS:  # enforced by the grammar alone: the prompt has no room for it
        return "Answer with a JSON object only."
    return f"Answer with a JSON object only, matching this JSON Schema:\n{text}"
