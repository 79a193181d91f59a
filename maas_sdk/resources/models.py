"""`client.models`: the models the server can run."""

from __future__ import annotations

from typing_extensions import Unpack

from maas_sdk import _endpoints as endpoints
from maas_sdk._pagination import AsyncPager, Page, async_pager, first_page
from maas_sdk._types import RequestOptions
from maas_sdk.protocol import Model
from maas_sdk.resources._base import AsyncResource, SyncResource

__all__ = ["AsyncModels", "Models"]


class Models(SyncResource):
    __slots__ = ()

    def list(self, **options: Unpack[RequestOptions]) -> Page[Model]:
        """Every model the server serves: iterate the page, or read `.data`."""
        return first_page(self._api, endpoints.list_models(options))

    def retrieve(self, model: str, **options: Unpack[RequestOptions]) -> Model:
        """One model's description; `NotFoundError` if the server has no such model."""
        return self._api.request(endpoints.retrieve_model(model, options))


class AsyncModels(AsyncResource):
    __slots__ = ()

    def list(self, **options: Unpack[RequestOptions]) -> AsyncPager[Model]:
        """Every model the server serves: `async for` them, or `(await ...).data`."""
        return async_pager(self._api, endpoints.list_models(options))

    async def retrieve(self, model: str, **options: Unpack[RequestOptions]) -> Model:
        """One model's description; `NotFoundError` if the server has no such model."""
        return await self._api.request(endpoints.retrieve_model(model, options))
