"""Raw answers: `with_raw_response` and `with_streaming_response`, for every method of both clients.

`client.with_raw_response` (and `client.models.with_raw_response`, ...) is a view of the
client whose methods return a `RawResponse`: status, headers and the read body, with
`parse()` giving what the method would have returned. `with_streaming_response` is a
view whose methods return a context manager; the request is sent on entering it and
the body is read only when asked (`read()`, `iter_bytes()`, `parse()`, ...), then
released on leaving it:

    raw = client.with_raw_response.generate("Hi", model=m)
    print(raw.headers["x-request-id"], raw.parse().text)

    with client.with_streaming_response.files.content(file_id) as response:
        for piece in response.iter_bytes():
            ...

Both views are made here, once, for every method: a view is the same client (or
resource) over an API in another `ResponseMode`, so each method's own code builds and
sends the call, and the API decides what comes back. Error answers still raise, and
calls are still retried. Helpers that make several requests (`jobs.wait()`) have no
raw form. Type checkers see a view's attributes as `Any`: one generic view serves every
method, where typing each would mean a second declaration of every method.
"""

from __future__ import annotations

import functools
import inspect
import json
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from types import TracebackType
from typing import Any, ClassVar, Generic, TypeVar

import httpx
from typing_extensions import Self

from maas_sdk._core import ResponseMode

__all__ = [
    "AsyncResponseContextManager",
    "AsyncStreamedResponse",
    "RawResponse",
    "ResponseContextManager",
    "ResponseView",
    "StreamedResponse",
    "Viewable",
]

R = TypeVar("R")
T = TypeVar("T")

# Public methods that are not one request each, so have no raw response.
# Methods that make no request or several (waiting, submitting a batch, reading its results).
_NOT_ONE_REQUEST = frozenset({"close", "with_options", "wait", "submit", "results"})


class _Answer(Generic[R]):
    """What raw and streamed responses share: the status line and headers, and parsing once."""

    __slots__ = ("_parse", "_parsed", "http_response")

    def __init__(self, response: httpx.Response, parse: Callable[[], Any]) -> None:
        self.http_response = response
        self._parse = parse  # what the method would have returned; awaitable for the async client
        self._parsed: list[R] = []  # that result, once parsed

    @property
    def status_code(self) -> int:
        return self.http_response.status_code

    @property
    def headers(self) -> httpx.Headers:
        return self.http_response.headers

    @property
    def url(self) -> httpx.URL:
        return self.http_response.url

    @property
    def request_id(self) -> str | None:
        """The server's `x-request-id` for this call."""
        request_id: str | None = self.http_response.headers.get("x-request-id")
        return request_id

    def _parsed_once(self) -> R:
        if not self._parsed:
            self._parsed.append(self._parse())
        return self._parsed[0]

    def __repr__(self) -> str:
        return f"<{type(self).__name__} [{self.status_code}] {self.http_response.request.method} {self.url}>"


class RawResponse(_Answer[R]):
    """An answer whose body has been read (for a streamed call: whose stream is still unread).

    `parse()` returns what the method returns without `with_raw_response`, and the same
    object on every call.
    """

    __slots__ = ()

    @property
    def content(self) -> bytes:
        return self.http_response.content

    @property
    def text(self) -> str:
        return self.http_response.text

    def json(self) -> Any:
        return json.loads(self.http_response.content)

    def parse(self) -> R:
        return self._parsed_once()


class StreamedResponse(_Answer[R]):
    """An answer whose body is read only when asked; leave its `with` block to release it."""

    __slots__ = ()

    def read(self) -> bytes:
        return self.http_response.read()

    def text(self) -> str:
        self.read()
        return self.http_response.text

    def json(self) -> Any:
        return json.loads(self.read())

    def iter_bytes(self, chunk_size: int | None = None) -> Iterator[bytes]:
        return self.http_response.iter_bytes(chunk_size)

    def iter_text(self, chunk_size: int | None = None) -> Iterator[str]:
        return self.http_response.iter_text(chunk_size)

    def iter_lines(self) -> Iterator[str]:
        return self.http_response.iter_lines()

    def parse(self) -> R:
        """Read the body (a stream is returned unread) and return what the method would have."""
        return self._parsed_once()

    def close(self) -> None:
        self.http_response.close()


class AsyncStreamedResponse(_Answer[R]):
    """`StreamedResponse` for the async client: `await response.parse()`, `async for` its pieces."""

    __slots__ = ()

    async def read(self) -> bytes:
        return await self.http_response.aread()

    async def text(self) -> str:
        await self.read()
        return self.http_response.text

    async def json(self) -> Any:
        return json.loads(await self.read())

    async def iter_bytes(self, chunk_size: int | None = None) -> AsyncIterator[bytes]:
        async for piece in self.http_response.aiter_bytes(chunk_size):
            yield piece

    async def iter_text(self, chunk_size: int | None = None) -> AsyncIterator[str]:
        async for piece in self.http_response.aiter_text(chunk_size):
            yield piece

    async def iter_lines(self) -> AsyncIterator[str]:
        async for line in self.http_response.aiter_lines():
            yield line

    async def parse(self) -> R:
        """Read the body (a stream is returned unread) and return what the method would have."""
        if not self._parsed:
            self._parsed.append(await self._parse())
        return self._parsed[0]

    async def close(self) -> None:
        await self.http_response.aclose()


class ResponseContextManager(Generic[T]):
    """Sends the request on `__enter__`, releases the answer on `__exit__`."""

    __slots__ = ("_open", "_response")

    def __init__(self, open: Callable[[], T]) -> None:
        self._open = open
        self._response: T | None = None

    def __enter__(self) -> T:
        self._response = self._open()
        return self._response

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if isinstance(self._response, StreamedResponse):
            self._response.close()


class AsyncResponseContextManager(Generic[T]):
    """Sends the request on `__aenter__`, releases the answer on `__aexit__`."""

    __slots__ = ("_open", "_response")

    def __init__(self, open: Callable[[], Awaitable[T]]) -> None:
        self._open = open
        self._response: T | None = None

    async def __aenter__(self) -> T:
        self._response = await self._open()
        return self._response

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if isinstance(self._response, AsyncStreamedResponse):
            await self._response.close()


class Viewable(ABC):
    """A client or resource: it has the two raw views, made from `_viewed(mode)`."""

    __slots__ = ()
    # How `with_streaming_response` hands out an answer: a sync or an async context manager.
    _context_manager: ClassVar[type[ResponseContextManager[Any] | AsyncResponseContextManager[Any]]]

    @abstractmethod
    def _viewed(self, mode: ResponseMode) -> Self:
        """This object over an API answering in `mode`."""

    @property
    def with_raw_response(self) -> ResponseView:
        """The same methods, returning a `RawResponse` (`.headers`, `.status_code`, `.parse()`)."""
        return ResponseView(self._viewed("raw"), None)

    @property
    def with_streaming_response(self) -> ResponseView:
        """The same methods, returning a context manager around a `StreamedResponse` (async:
        `AsyncStreamedResponse`), whose body is read only when asked."""
        return ResponseView(self._viewed("streamed"), type(self)._context_manager)


class ResponseView:
    """The API methods (and resources) of a client or resource, answering with raw responses."""

    __slots__ = ("_target", "_wrap")

    def __init__(self, target: Viewable, wrap: Callable[[Callable[[], Any]], Any] | None) -> None:
        self._target = target
        self._wrap = wrap

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or name in _NOT_ONE_REQUEST:
            raise AttributeError(f"{name!r} has no raw response form")
        value = getattr(self._target, name)
        if isinstance(value, Viewable):
            return ResponseView(value, self._wrap)
        if not inspect.ismethod(value):
            raise AttributeError(f"{name!r} is not an API method")
        wrap = self._wrap
        if wrap is None:
            return value
        method = value

        @functools.wraps(method)
        def opened(*args: Any, **kwargs: Any) -> Any:
            return wrap(lambda: method(*args, **kwargs))

        return opened

    def __dir__(self) -> list[str]:
        names = []
        for name in dir(self._target):
            if name.startswith("_") or name in _NOT_ONE_REQUEST:
                continue
            value = getattr(self._target, name)
            if isinstance(value, Viewable) or inspect.ismethod(value):
                names.append(name)
        return names

    def __repr__(self) -> str:
        return f"<{type(self).__name__} of {type(self._target).__name__}>"

