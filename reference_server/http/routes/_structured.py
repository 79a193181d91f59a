"""Route glue for constrained decoding: compile a request's grammar (off the event loop, in
the model's compile pool) and give each generation its own matcher."""

from __future__ import annotations

from typing import TYPE_CHECKING

from reference_server.inference.registry import ServedModel
from reference_server.inference.structured.errors import ConstraintError

if TYPE_CHECKING:
    from reference_server.inference.structured import GrammarSpec, RowConstraint


async def constraints(served: ServedModel, spec: GrammarSpec | None, count: int) -> list[RowConstraint | None]:
    """`count` fresh matchers of `spec` (all None when there is no constraint).

    Raises ConstraintError (a 400) when the grammar is invalid, too large or too slow to compile.
    """
    if spec is None:
        return [None] * count
    if served.structured is None:
        raise ConstraintError(f"Model {served.id!r} does not support constrained decoding.", param="model")
    compiled = await served.structured.compile(spec)
    return [served.structured.matcher(compiled) for _ in range(count)]
