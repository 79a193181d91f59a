"""What to load (`ModelSpec`, validated by its types whether it comes from settings or is built
in code) and what loading gives (`LoadedModel`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from maas_sdk.protocol.vocabulary import Task

Dtype = Literal["auto", "float32", "bfloat16", "float16"]
# Whether a generator's linear weights are pre-packed for oneDNN on CPU (engine/packed_linear.py).
PackedWeights = Literal["auto", "on", "off"]


class ModelSpec(BaseModel):
    """What to load and how.

    `path` is a local Hugging Face folder; `None` means a built-in model resolved from its
    installed package by `id`. `gguf_file` names a GGUF file inside `path` to convert. Fields are
    checked on creation and on every assignment, so a spec can never hold an unknown value.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    id: str
    path: str | None = None
    task: Task
    gguf_file: str | None = None
    dtype: Dtype = "auto"
    quantization: Literal["int8", "int4"] | None = None


@dataclass
class LoadedModel:
    """A model ready for inference plus the facts the server reports about it."""

    spec: ModelSpec
    model: Any
    tokenizer: Any
    device: str
    dtype: str
    context_length: int
    parameters: int

    @property
    def task(self) -> Task:
        return self.spec.task

    @property
    def id(self) -> str:
        return self.spec.id


