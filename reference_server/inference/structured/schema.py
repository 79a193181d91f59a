"""The JSON Schema subset the grammar enforces, checked before compiling, and the normal form
of a schema that the compile cache keys on.

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


def normal_form(schema: Any) -> Any:
    """`schema` with its keywords sorted at every level, except the order of each `properties`
    map, which is the order the generated object's keys follow (OpenAI's structured outputs
    promise it; a small model also fills fields better in the order the prompt suggests).

    Equal schemas written with other whitespace or keyword order have one normal form, so the
    compile cache serves them; values (`enum`, `const`, `default`, ...) are kept as sent.
    """
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key in sorted(schema):
        value = schema[key]
        if key in _ONE:
            out[key] = normal_form(value)
        elif key in _LIST and isinstance(value, list):
            out[key] = [normal_form(item) for item in value]
        elif key in _MAP and isinstance(value, dict):
            names = value if key == "properties" else sorted(value)
            out[key] = {name: normal_form(value[name]) for name in names}
        else:
            out[key] = value
    return out
