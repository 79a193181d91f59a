"""Work outside the generation engine (zero-shot scoring, evaluation) run as a fine-tuned
adapter model: the adapter applied to every forward of the calling thread; and which
fine-tuned classifiers run on their base encoder's batcher instead (`batched_classifier`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from reference_server.inference.registry import ServedModel

if TYPE_CHECKING:
    from reference_server.inference.engine.embeddings import EmbeddingBatcher
    from reference_server.inference.engine.heads import ClassifierSource

T = TypeVar("T")


def adapted(served: ServedModel, fn: Callable[..., T]) -> Callable[..., T]:
    """`fn`, run with `served`'s adapter in every forward it makes (`fn` itself for a model with
    weights of its own). Call the result on the thread that runs the forwards."""
    engine, source = served.engine, served.adapter
    if source is None or engine is None:
        return fn

    def run(*args: object, **kwargs: object) -> T:
        from reference_server.inference.engine.lora import applying, whole_forward

        with applying(whole_forward(engine.adapters.acquire(source))):
            return fn(*args, **kwargs)

    return run


def batched_classifier(served: ServedModel) -> tuple[EmbeddingBatcher, ClassifierSource] | None:
    """The base encoder's batcher and the classifier (adapter and head) `served` is, for a
    fine-tuned classifier served that way; None for a model with weights of its own."""
    from reference_server.inference.engine.heads import ClassifierSource

    if served.task == "classify" and served.batcher is not None and isinstance(served.adapter, ClassifierSource):
        return served.batcher, served.adapter
    return None
