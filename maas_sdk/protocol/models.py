"""`GET /v1/models`: what the server can run, with our extra descriptive fields."""

from __future__ import annotations

from maas_sdk.protocol.common import ResponseModel


class Model(ResponseModel):
    id: str
    object: str = "model"
    created: int = 0
    owned_by: str = "maas"
    # Extensions (absent on other OpenAI-compatible servers, hence optional):
    task: str | None = None
    context_length: int | None = None
    parameters: int | None = None
    dtype: str | None = None
    device: str | None = None
    quantization: str | None = None
    parent: str | None = None


class ModelList(ResponseModel):
    object: str = "list"
    data: list[Model]


class ModelDeleted(ResponseModel):
    """`DELETE /v1/models/{id}` of a fine-tuned model."""

    id: str
    object: str = "model"
    deleted: bool = True
