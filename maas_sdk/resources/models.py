"""`client.models`: the models the server can run."""

from __future__ import annotations

from typing_extensions import Unpack

from maas_sdk import _endpoints as endpoints
from maas_sdk._types import RequestOptions
from maas_sdk.protocol import Model, ModelList
from maas_sdk.resources._base import AsyncResource, SyncResource

__all__ = ["AsyncModels", "Models"]


class Models(SyncResource):
    def list(self, **options: Unpack[RequestOptions]) -> ModelList:
        """Every model the server serves (`.data`)."""
        return self._client._request(endpoints.list_models(options))

    def retrieve(self, model: str, **options: Unpack[RequestOptions]) -> Model:
        """One model's description; `NotFoundError` if the server has no such model."""
        return self._client._request(endpoints.retrieve_model(model, options))


class AsyncModels(AsyncResource):
    async def list(self, **options: Unpack[RequestOptions]) -> ModelList:
        """Every model the server serves (`.data`)."""
        return await self._client._request(endpoints.list_models(options))

    async def retrieve(self, model: str, **options: Unpack[RequestOptions]) -> Model:
        """One model's description; `NotFoundError` if the server has no such model."""
        return await self._client._request(endpoints.retrieve_model(model, options))
