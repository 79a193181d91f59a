"""Cursor pagination: iterate every item of a list endpoint, one page request at a time.

List endpoints answer `{"data": [...], "has_more": bool}`; the next page is asked for
with `after=<id of the last item>`. `Pager` (sync) and `AsyncPager` (async) fetch
pages lazily, only as iteration reaches them, and each iteration starts over from
the first page.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from typing import Generic, TypeVar

from typing_extensions import Protocol

from maas_sdk.protocol import ResponseModel

__all__ = ["AsyncPager", "CursorPage", "Pager"]


class _Identified(Protocol):
    @property
    def id(self) -> str: ...


ItemT = TypeVar("ItemT", bound=_Identified)
ItemT_co = TypeVar("ItemT_co", covariant=True)
ModelT = TypeVar("ModelT", bound=ResponseModel)


class _Page(Protocol[ItemT_co]):
    @property
    def data(self) -> Sequence[ItemT_co]: ...

    @property
    def has_more(self) -> bool: ...


class CursorPage(ResponseModel, Generic[ModelT]):
    """One page of a list endpoint, for item types the protocol has no list model for."""

    object: str = "list"
    data: list[ModelT]
    has_more: bool = False


def next_cursor(page: _Page[_Identified]) -> str | None:
    """The `after` value for the page following this one, or None if it was the last."""
    if page.has_more and page.data:
        return page.data[-1].id
    return None


class Pager(Generic[ItemT]):
    """Every item of a list, across pages: `for job in client.fine_tuning.jobs.list(): ...`."""

    def __init__(self, fetch: Callable[[str | None], _Page[ItemT]], after: str | None = None) -> None:
        self._fetch = fetch
        self._after = after

    def __iter__(self) -> Iterator[ItemT]:
        after = self._after
        while True:
            page = self._fetch(after)
            yield from page.data
            after = next_cursor(page)
            if after is None:
                return


class AsyncPager(Generic[ItemT]):
    """Every item of a list, across pages: `async for job in client.fine_tuning.jobs.list(): ...`."""

    def __init__(
        self, fetch: Callable[[str | None], Awaitable[_Page[ItemT]]], after: str | None = None
    ) -> None:
        self._fetch = fetch
        self._after = after

    async def __aiter__(self) -> AsyncIterator[ItemT]:
        after = self._after
        while True:
            page = await self._fetch(after)
            for item in page.data:
                yield item
            after = next_cursor(page)
            if after is None:
                return
