"""Domain errors: what can go wrong with a request, said without HTTP.

Every layer below `http/` raises these (or subclasses of them); `reference_server.http.errors`
maps each kind to its status and the one error body, in one table. `param` names the request
parameter at fault, `code` is the machine-readable reason, `retry_after` (seconds) is set for
refusals that a retry can overcome.
"""

from __future__ import annotations


class DomainError(Exception):
    """Base of every error a request can meet below HTTP."""

    default_code = "invalid_value"
    # False for refusals no retry can overcome before `retry_after` (answered with `x-should-retry: false`).
    retryable = True

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None,
                 retry_after: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code or self.default_code
        self.retry_after = retry_after


class InvalidRequest(DomainError, ValueError):
    """The request cannot be served as asked (HTTP 400); a ValueError too, since it is one."""


class NotFound(DomainError):
    """No such model, file or job for this caller (HTTP 404)."""

    default_code = "not_found"


class Forbidden(DomainError):
    """The caller may not do this (HTTP 403)."""

    default_code = "forbidden"


class Conflict(DomainError):
    """The resource is in a state that does not allow this (HTTP 409)."""

    default_code = "conflict"


class Overloaded(DomainError):
    """A bounded queue is full; retry shortly (HTTP 429)."""

    default_code = "overloaded"


class QuotaExceeded(DomainError):
    """The caller's budget is used up until it renews, `retry_after` seconds from now (HTTP 429); retrying
    sooner cannot succeed."""

    default_code = "quota_exceeded"
    retryable = False


class StorageFull(DomainError):
    """Nothing could be stored: the data directory (or its quota) is full (HTTP 507)."""

    default_code = "storage_full"


class Unavailable(DomainError):
    """The part that would serve this is not running (loading, stopping) (HTTP 503)."""

    default_code = "unavailable"
