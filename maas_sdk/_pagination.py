"""Pages of list endpoints, which iterate their items across pages, as openai-python's do.

List endpoints answer `{"object": "list", "data": [...], "has_more": bool}`; the next
page is asked for with `after=<id of the page's last item>`.

- The sync client's `list()` fetches the first page and returns it as a `Page`:
  `.data`, `.has_more`, `has_next_page()`, `get_next_page()`, `iter_pages()`; and
  iterating it walks every item of every page, fetching each next page only as
  iteration reaches it (`for job in client.fine_tuning.jobs.list(): ...`).
- The async client's `list()` returns an `AsyncPager` at once, having fetched nothing:
  `await` it for the first `AsyncPage` (the same helpers, awaited), or `async for` it
  for every item of every page.

Which page follows which is decided once, in `BasePage`; the two shells only differ
in how they wait for the next one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Iterator
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from typing_extensions import Protocol

from maas_sdk._core import Call
from maas_sdk.protocol import ResponseModel

if TYPE_CHECKING:
    from maas_sdk._api import AsyncAPI, SyncAPI

__all__ = ["AsyncPage", "AsyncPager", "BasePage", "ListBody", "Page", "async_pager", "first_page"]


class _Identified(Protocol):
    @property
    def id(self) -> str: ...


T = TypeVar("T")
ItemT = TypeVar("ItemT", bound=_Identified)
ApiT = TypeVar("ApiT")


# Gives an item fetched through an API what it needs to make calls of its own (a job's `wait()`).
Bind = Callable[[ItemT, ApiT], ItemT]


class ListBody(ResponseModel, Generic[T]):
    """The body of a list endpoint's answer."""

    object: str = "list"
    data: list[T]
    has_more: bool = False


class BasePage(Generic[ItemT, ApiT]):
    """One page of a list: its items, and the call and API that fetch the page after it."""

    __slots__ = ("_api", "_bind", "_body", "_call", "data", "has_more", "object", "request_id")

    def __init__(
        self, body: ListBody[ItemT], call: Call[ListBody[ItemT]], api: ApiT, bind: Bind[ItemT, ApiT] | None
    ) -> None:
        self._body = body
        self.data = body.data if bind is None else [bind(item, api) for item in body.data]
        self.has_more = body.has_more
        self.object = body.object
        self.request_id = body.request_id
        self._call = call
        self._api = api
        self._bind = bind

    def model_dump(self, **options: Any) -> dict[str, Any]:
        """This page as its list body, `{"object", "data", "has_more"}`; `options` as pydantic's."""
        return self._body.model_dump(**options)

    def has_next_page(self) -> bool:
        return self._next_call() is not None

    def _next_call(self) -> Call[ListBody[ItemT]] | None:
        if not (self.has_more and self.data):
            return None
        query = self._call.query or {}
        cursor = self.data[-1].id
        if cursor == query.get("after"):  # a server that ignores `after` would be walked forever
            return None
        return replace(self._call, query={**query, "after": cursor})

    def __repr__(self) -> str:
        return f"{type(self).__name__}(data={self.data!r}, has_more={self.has_more})"


class Page(BasePage[ItemT, "SyncAPI"]):
    """A page from the sync client; iterating it yields every item of this page and the following ones."""

    __slots__ = ()

    def get_next_page(self) -> Page[ItemT]:
        """Fetch the page after this one; `RuntimeError` if this is the last (see `has_next_page()`)."""
        call = self._next_call()
        if call is None:
            raise RuntimeError("this is the last page; check has_next_page() first")
        return self._api.request(call, paging(call, self._bind))

    def iter_pages(self) -> Iterator[Page[ItemT]]:
        """This page and each following one, fetched as iteration reaches it."""
        page = self
        while True:
            yield page
            if not page.has_next_page():
                return
            page = page.get_next_page()

    def __iter__(self) -> Iterator[ItemT]:
        for page in self.iter_pages():
            yield from page.data


class AsyncPage(BasePage[ItemT, "AsyncAPI"]):
    """A page from the async client; `async for` it yields every item of this page and the following ones."""

    __slots__ = ()

    async def get_next_page(self) -> AsyncPage[ItemT]:
        """Fetch the page after this one; `RuntimeError` if this is the last (see `has_next_page()`)."""
        call = self._next_call()
        if call is None:
            raise RuntimeError("this is the last page; check has_next_page() first")
        return await self._api.request(call, async_paging(call, self._bind))

    async def iter_pages(self) -> AsyncIterator[AsyncPage[ItemT]]:
        """This page and each following one, fetched as iteration reaches it."""
        page = self
        while True:
            yield page
            if not page.has_next_page():
                return
            page = await page.get_next_page()

    async def __aiter__(self) -> AsyncIterator[ItemT]:
        async for page in self.iter_pages():
            for item in page.data:
                yield item


class AsyncPager(Generic[ItemT]):
    """What the async client's `list()` returns, before anything is fetched: `await` it for the
    first `AsyncPage`, or `async for` it for every item of every page."""

    __slots__ = ("_first",)

    def __init__(self, first: Callable[[], Awaitable[AsyncPage[ItemT]]]) -> None:
        self._first = first

    def __await__(self) -> Generator[Any, None, AsyncPage[ItemT]]:
        return self._first().__await__()

    async def __aiter__(self) -> AsyncIterator[ItemT]:
        async for item in await self._first():
            yield item


def paging(
    call: Call[ListBody[ItemT]], bind: Bind[ItemT, SyncAPI] | None = None
) -> Callable[[ListBody[ItemT], SyncAPI], Page[ItemT]]:
    """The `then` that makes the sync client's answer to `call` a `Page`."""
    return lambda body, api: Page(body, call, api, bind)


def async_paging(
    call: Call[ListBody[ItemT]], bind: Bind[ItemT, AsyncAPI] | None = None
) -> Callable[[ListBody[ItemT], AsyncAPI], AsyncPage[ItemT]]:
    """The `then` that makes the async client's answer to `call` an `AsyncPage`."""
    return lambda body, api: AsyncPage(body, call, api, bind)


def first_page(
    api: SyncAPI, call: Call[ListBody[ItemT]], bind: Bind[ItemT, SyncAPI] | None = None
) -> Page[ItemT]:
    """`list()` of the sync client: the first page, fetched now."""
    return api.request(call, paging(call, bind))


def async_pager(
    api: AsyncAPI, call: Call[ListBody[ItemT]], bind: Bind[ItemT, AsyncAPI] | None = None
) -> AsyncPager[ItemT]:
    """`list()` of the async client: the pager, which fetches on `await` or `async for`."""
    return AsyncPager(lambda: api.request(call, async_paging(call, bind)))

