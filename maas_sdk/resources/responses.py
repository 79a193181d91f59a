"""`client.responses`: OpenAI's Responses API: create (streamed or not), parse into a pydantic
model, and the stored responses (retrieve, delete, their input items)."""

from __future__ import annotations

from typing import Literal, overload

from pydantic import BaseModel
from typing_extensions import Unpack

from maas_sdk import _endpoints as endpoints
from maas_sdk._pagination import AsyncPager, Page, async_pager, first_page
from maas_sdk._response_format import ParsedResponse
from maas_sdk._streaming import AsyncStream, Stream
from maas_sdk._tools import ModelT
from maas_sdk._types import RequestOptions, ResponseInputParam, ResponseParams
from maas_sdk.protocol import Response, ResponseDeleted, ResponseInputItem, ResponseStreamEvent
from maas_sdk.resources._base import AsyncResource, SyncResource

__all__ = ["AsyncResponses", "Responses"]

Order = Literal["asc", "desc"]


class Responses(SyncResource):
    __slots__ = ()

    @overload
    def create(
        self, *, model: str, input: ResponseInputParam | None = None, stream: Literal[False] = False,
        **params: Unpack[ResponseParams],
    ) -> Response: ...
    @overload
    def create(
        self, *, model: str, input: ResponseInputParam | None = None, stream: Literal[True],
        **params: Unpack[ResponseParams],
    ) -> Stream[ResponseStreamEvent]: ...
    @overload
    def create(
        self, *, model: str, input: ResponseInputParam | None = None, stream: bool,
        **params: Unpack[ResponseParams],
    ) -> Response | Stream[ResponseStreamEvent]: ...
    def create(
        self, *, model: str, input: ResponseInputParam | None = None, stream: bool = False,
        **params: Unpack[ResponseParams],
    ) -> Response | Stream[ResponseStreamEvent]:
        """A model response (POST /responses): a `Response` (`.output_text`, `.output`), or with
        `stream=True` a `Stream` of its events. `input` is text or a list of items (dicts, or the
        output items of an earlier response); `previous_response_id` continues a stored one."""
        call = endpoints.create_response(model=model, input=input, stream=stream, **params)
        return self._api.stream(call) if stream else self._api.request(call)

    def stream(
        self, *, model: str, input: ResponseInputParam | None = None, text_format: type[BaseModel] | None = None,
        **params: Unpack[ResponseParams],
    ) -> Stream[ResponseStreamEvent]:
        """The response's events as they come (use it in a `with` block); `get_final_response()`
        returns the whole response, `text_stream` its text. `text_format` constrains the text
        to a pydantic model's schema."""
        return self._api.stream(endpoints.create_response(model=model, input=input, stream=True,
                                                          text_format=text_format, **params))

    def parse(
        self, *, model: str, input: ResponseInputParam | None = None, text_format: type[ModelT],
        **params: Unpack[ResponseParams],
    ) -> ParsedResponse[ModelT]:
        """A response whose text is constrained to `text_format`'s JSON schema; `.parsed` is that
        text as a `text_format` instance (None if the response is incomplete)."""
        call = endpoints.create_response(model=model, input=input, stream=False, text_format=text_format, **params)
        parsed: ParsedResponse[ModelT] = self._api.request(call)
        return parsed

    def retrieve(self, response_id: str, **options: Unpack[RequestOptions]) -> Response:
        """A stored response (`store` was not false), as it was returned."""
        return self._api.request(endpoints.retrieve_response(response_id, options))

    def delete(self, response_id: str, **options: Unpack[RequestOptions]) -> ResponseDeleted:
        return self._api.request(endpoints.delete_response(response_id, options))

    def input_items(
        self, response_id: str, *, limit: int | None = None, after: str | None = None, order: Order | None = None,
        **options: Unpack[RequestOptions],
    ) -> Page[ResponseInputItem]:
        """The input items of a stored response, last first (`order="asc"`: first first);
        iterating the page walks them all, `limit` per request."""
        call = endpoints.response_input_items(response_id, limit=limit, after=after, order=order, options=options)
        return first_page(self._api, call)


class AsyncResponses(AsyncResource):
    __slots__ = ()

    @overload
    async def create(
        self, *, model: str, input: ResponseInputParam | None = None, stream: Literal[False] = False,
        **params: Unpack[ResponseParams],
    ) -> Response: ...
    @overload
    async def create(
        self, *, model: str, input: ResponseInputParam | None = None, stream: Literal[True],
        **params: Unpack[ResponseParams],
    ) -> AsyncStream[ResponseStreamEvent]: ...
    @overload
    async def create(
        self, *, model: str, input: ResponseInputParam | None = None, stream: bool,
        **params: Unpack[ResponseParams],
    ) -> Response | AsyncStream[ResponseStreamEvent]: ...
    async def create(
        self, *, model: str, input: ResponseInputParam | None = None, stream: bool = False,
        **params: Unpack[ResponseParams],
    ) -> Response | AsyncStream[ResponseStreamEvent]:
        """A model response; see `Responses.create`."""
        call = endpoints.create_response(model=model, input=input, stream=stream, **params)
        if stream:
            return await self._api.stream(call)
        return await self._api.request(call)

    async def stream(
        self, *, model: str, input: ResponseInputParam | None = None, text_format: type[BaseModel] | None = None,
        **params: Unpack[ResponseParams],
    ) -> AsyncStream[ResponseStreamEvent]:
        """The response's events as they come (use it in an `async with` block); see `Responses.stream`."""
        return await self._api.stream(endpoints.create_response(model=model, input=input, stream=True,
                                                                text_format=text_format, **params))

    async def parse(
        self, *, model: str, input: ResponseInputParam | None = None, text_format: type[ModelT],
        **params: Unpack[ResponseParams],
    ) -> ParsedResponse[ModelT]:
        """A response parsed into `text_format`; see `Responses.parse`."""
        call = endpoints.create_response(model=model, input=input, stream=False, text_format=text_format, **params)
        parsed: ParsedResponse[ModelT] = await self._api.request(call)
        return parsed

    async def retrieve(self, response_id: str, **options: Unpack[RequestOptions]) -> Response:
        """A stored response, as it was returned."""
        return await self._api.request(endpoints.retrieve_response(response_id, options))

    async def delete(self, response_id: str, **options: Unpack[RequestOptions]) -> ResponseDeleted:
        return await self._api.request(endpoints.delete_response(response_id, options))

    def input_items(
        self, response_id: str, *, limit: int | None = None, after: str | None = None, order: Order | None = None,
        **options: Unpack[RequestOptions],
    ) -> AsyncPager[ResponseInputItem]:
        """The input items of a stored response; see `Responses.input_items`."""
        call = endpoints.response_input_items(response_id, limit=limit, after=after, order=order, options=options)
        return async_pager(self._api, call)
