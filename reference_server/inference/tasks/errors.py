"""The error every task raises for a request it cannot serve as asked."""

from __future__ import annotations

from reference_server.errors import InvalidRequest


class NLUError(InvalidRequest):
    """A request that cannot be served as asked; `param` names the offending parameter."""

    def __init__(self, message: str, param: str) -> None:
        super().__init__(message, param=param)
