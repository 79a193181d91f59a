"""The JSON Schema subset the grammar enforces, checked before compiling.

xgrammar drops a few keywords silently (`not`, `if`/`then`/`else`, `allOf` with several
parts, unknown `format`s): the output would then not be guaranteed to validate. Rather than
lose a constraint without a word, a schema using anything outside this list is refused
with a 400 that names the keyword and where it is.
"""

from __future__ import annotations

from typing import Any

from reference_server.inference.structured.errors import ConstraintError

# Keywords whose value is one schema, a list of schemas, or a map of name -> schema.
_ONE = frozenset({"items", "additionalProperties", "contains", "propertyNames", "unevaluatedProperties"})
_LIST = frozenset({"anyOf", "oneOf", "allOf", "prefixItems"})
_MAP = frozenset({"properties", "patternProperties", "$defs", "definitions"})
# Keywords enforced as they are, and annotations that constrain nothing.
_PLAIN = frozenset({
    "type", "required", "enum", "const", "$ref",
    "minItems", "maxItems", "uniqueItems", "minContains", "maxContains",
    "minLength", "maxLength", "pattern", "format",
    "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf",
    "minProperties", "maxProperties", "dependentRequired",
    "title", "description", "default", "examples", "$schema", "$id", "$comment",
    "deprecated", "readOnly", "writeOnly", "strict",
})
FORMATS = frozenset({
    "date", "time", "date-time", "duration", "email", "hostname", "ipv4", "ipv6", "uri",
    "uri-reference", "uuid",
})


def check_schema(schema: Any, param: str) -> None:
    """Raise ConstraintError naming the first keyword the grammar cannot enforce."""
    _check(schema, param, "#")


def _check(node: Any, param: str, path: str) -> None:
    if isinstance(node, bool):
        return
    if not isinstance(node, dict):
        raise ConstraintError(f"{param}: the schema at {path} must be an object or a boolean.", param=param)
    for key, value in node.items():
        where = f"{path}/{key}"
        if key in _ONE:
            _check(value, param, where)
        elif key in _LIST:
            if not isinstance(value, list):
                raise ConstraintError(f"{param}: '{key}' at {path} must be a list of schemas.", param=param)
            if key == "allOf" and len(value) > 1:
                raise _unsupported(param, "allOf", path, "allOf with more than one schema")
            for i, item in enumerate(value):
                _check(item, param, f"{where}/{i}")
        elif key in _MAP:
            if not isinstance(value, dict):
                raise ConstraintError(f"{param}: '{key}' at {path} must be an object.", param=param)
            for name, item in value.items():
                _check(item, param, f"{where}/{name}")
        elif key == "format":
            if value not in FORMATS:
                raise _unsupported(param, "format", path, f"format {value!r} (supported: {', '.join(sorted(FORMATS))})")
        elif key not in _PLAIN:
            raise _unsupported(param, key, path, f"'{key}'")


def _unsupported(param: str, keyword: str, path: str, what: str) -> ConstraintError:
    return ConstraintError(
        f"{param}: the JSON Schema keyword {what} at {path} is not supported by constrained decoding; "
        "remove it or express it with supported keywords (see docs/structured-outputs.md).",
        param=param,
        code="unsupported_schema",
    )
