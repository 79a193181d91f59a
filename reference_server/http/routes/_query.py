"""Query-string parameters of the list routes (`after`, `limit`, ...), checked like body fields:
a bad value is a 400 naming the parameter; the page of a list those two ask for; and the caller's
own item that a path names."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from starlette.requests import Request

from reference_server.errors import NotFound
from reference_server.http.errors import bad_request, not_found
from reference_server.storage import ids

T = TypeVar("T")


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


async def page(request: Request, fetch: Callable[..., Awaitable[tuple[list[T], bool]]], *args: Any, what: str,
               default: int, maximum: int, **kwargs: Any) -> tuple[list[T], bool]:
    """`fetch(*args, **kwargs, after=..., limit=...)`: the items after the query's cursor, at most
    `limit` (`default`, `maximum`) of them, and whether more follow. A cursor `fetch` does not
    know (a KeyError) is a 404 naming `after`: it names no `what`."""
    cursor = after(request)
    try:
        return await fetch(*args, **kwargs, after=cursor, limit=limit(request, default, maximum))
    except KeyError:
        raise cursor_not_found(cursor, what) from None


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


async def owned(request: Request, item_id: str, prefix: str, get: Callable[[str, str], Awaitable[T | None]],
                missing: Exception) -> T:
    """`get(item_id, caller)`, the caller's item; a malformed id (not of `prefix`), an unknown one
    and another key's are all the same error, `missing`."""
    found = await get(item_id, principal(request)) if ids.is_valid(prefix, item_id) else None
    if found is None:
        raise missing
    return found
