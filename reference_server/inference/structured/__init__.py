"""Constrained decoding: grammars that make a generation parse (JSON Schema, regex, choices,
EBNF/Lark, tool calls), compiled off the engine thread and cached, and the per-row matchers
the engine uses to mask each step's logits.

The backend is xgrammar (see docs/structured-outputs.md for the comparison with llguidance
that chose it).
"""

from reference_server.inference.structured.backend import StructuredBackend
from reference_server.inference.structured.constraint import RowConstraint, apply_constraints
from reference_server.inference.structured.errors import ConstraintError
from reference_server.inference.structured.specs import GrammarSpec

__all__ = ["ConstraintError", "GrammarSpec", "RowConstraint", "StructuredBackend", "apply_constraints"]
