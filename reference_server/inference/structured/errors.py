"""The one error of constrained decoding: the request's constraint cannot be honoured."""

from __future__ import annotations

from reference_server.errors import InvalidRequest


class ConstraintError(InvalidRequest):
    """A schema, regex, grammar or tool definition that cannot be enforced (unsupported
    keyword, syntax error, too large or too slow to compile): a 400 naming `param`, whose
    `code` says which kind of failure it was."""

    def __init__(self, message: str, *, param: str, code: str = "invalid_value") -> None:
        super().__init__(message, param=param, code=code)
        self.param: str = param
