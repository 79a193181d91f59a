"""What a request asks its output to match, as a hashable `GrammarSpec` (the compile cache key).

Each builder checks its input (the JSON Schema subset, a choice list that is not empty) and
raises ConstraintError naming the request parameter. The tool-call format is built in
`tools.py` on top of `json_schema_tag`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

from reference_server.inference.structured.errors import ConstraintError
from reference_server.inference.structured.schema import check_schema, normal_form

Kind = Literal["json_schema", "regex", "grammar", "structural_tag"]


@dataclass(frozen=True)
class GrammarSpec:
    """A grammar to compile: its kind and its source text (a JSON schema in normal form). `param` is the request
    parameter it came from, named by errors; it is not part of the cache key."""

    kind: Kind
    source: str
    param: str = ""

    def __hash__(self) -> int:
        return hash((self.kind, self.source))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, GrammarSpec) and (self.kind, self.source) == (other.kind, other.source)

    @property
    def size(self) -> int:
        return len(self.source)


def compact(value: Any) -> str:
    """JSON text without whitespace, keys in the order given: the same for equal documents
    however they were spaced, and an object's key order (which a schema's `properties`
    order means something by) kept."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def json_schema(schema: Any, param: str) -> GrammarSpec:
    check_schema(schema, param)
    return GrammarSpec("json_schema", compact(normal_form(schema)), param)


def json_object(param: str) -> GrammarSpec:
    """Any JSON object (`response_format: {"type": "json_object"}`)."""
    return GrammarSpec("json_schema", compact({"type": "object"}), param)


def regex(pattern: str, param: str) -> GrammarSpec:
    if not pattern:
        raise ConstraintError(f"{param} must be a non-empty regular expression.", param=param)
    return GrammarSpec("regex", pattern, param)


def choice(options: list[str], param: str) -> GrammarSpec:
    """Exactly one of `options`, as an EBNF alternation of string literals."""
    if not options or any(not isinstance(o, str) or o == "" for o in options):
        raise ConstraintError(f"{param} must be a non-empty list of non-empty strings.", param=param)
    alternatives = " | ".join(json.dumps(o, ensure_ascii=False) for o in dict.fromkeys(options))
    return GrammarSpec("grammar", f"root ::= {alternatives}", param)


def grammar(text: str, param: str) -> GrammarSpec:
    """An EBNF (GBNF-style, `root ::= ...`) or Lark grammar."""
    if not text.strip():
        raise ConstraintError(f"{param} must be a non-empty grammar.", param=param)
    return GrammarSpec("grammar", text, param)


def structural_tag(tag: dict[str, Any], param: str) -> GrammarSpec:
    """A structural tag as built by `tools.py`, its JSON schemas already in normal form."""
    return GrammarSpec("structural_tag", compact(tag), param)
