"""`GET /v1/models`: what the server can run, with our extra descriptive fields."""

from __future__ import annotations

from typing import List, Optional

from maas_sdk.protocol.common import ResponseModel


class Model(ResponseModel):
    id: str
    object: str = "model"
    created: int = 0
    owned_by: str = "maas"
    # Extensions (absent on other OpenAI-compatible servers, hence optional):
    task: Optional[str] = None
    context_length: Optional[int] = None
    parameters: Optional[int] = None
    dtype: Optional[str] = None
    device: Optional[str] = None
    quantization: Optional[str] = None
    parent: Optional[str] = None


class ModelList(ResponseModel):
    object: str = "list"
    data: List[Model]
