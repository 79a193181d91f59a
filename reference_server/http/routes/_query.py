"""Query-string parameters of the list routes (`after`, `limit`, ...), checked like body fields:
a bad value is a 400 naming the parameter."""

from __future__ import annotations

from collections.abc import Sequence

from starlette.requests import Request

from reference_server.errors import NotFound
from reference_server.http.errors import bad_request, not_found


def limit(request: Request, default: int, maximum: int) -> int:
    raw = request.query_params.get("limit")
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise bad_request(f"limit must be an integer, got {raw!r}.", param="limit") from None
    if not 1 <= value <= maximum:
        raise bad_request(f"limit must be between 1 and {maximum}, got {value}.", param="limit")
    return value


def after(request: Request) -> str | None:
    """The page cursor: the id of the last item of the previous page."""
    raw = request.query_params.get("after")
    if raw == "":
        raise bad_request("after must be an id from the previous page, not empty.", param="after")
    return raw


def cursor_not_found(after: str | None, what: str) -> NotFound:
    """A cursor naming nothing the caller can see: a 404, as the id itself would be."""
    return not_found(f"after names no {what}: {after}", param="after")


def choice(request: Request, name: str, allowed: Sequence[str], default: str | None) -> str | None:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    if raw not in allowed:
        raise bad_request(f"{name} must be one of {', '.join(allowed)}, got {raw!r}.", param=name)
    return raw


def only(request: Request, *names: str) -> None:
    """400 naming the first query parameter the route does not take, as unknown body fields are."""
    for name in request.query_params:
        if name not in names:
            raise bad_request(f"Unrecognized query parameter: {name!r}", param=name, code="unknown_parameter")


def principal(request: Request) -> str:
    return str(getattr(request.state, "principal", "anonymous"))
