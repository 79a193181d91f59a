"""`POST /v1/embeddings` (OpenAI shape), served by the model's dynamic batcher."""

from __future__ import annotations

import array
import base64
from collections.abc import Sequence
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from maas_sdk import protocol as p
from maas_sdk.protocol import Embedding, EmbeddingRequest, Embeddings, EmbeddingUsage
from maas_sdk.protocol.vocabulary import DEFAULT_EMBEDDER
from reference_server.http.errors import bad_request
from reference_server.http.ignored import mark_ignored
from reference_server.http.metrics import model_label
from reference_server.http.middleware.auth import caller_of
from reference_server.http.middleware.ratelimit import charge_input_tokens
from reference_server.http.parsing import json_response, parse_body, served_model
from reference_server.http.routing import BODY_ERRORS, RouteTable
from reference_server.state import state_of

table = RouteTable("embeddings")


Inputs = list[str] | list[list[int]]


def normalise_inputs(raw: object, max_inputs: int) -> Inputs:
    """Inputs as a list of strings or a list of token-id lists; 400 naming `input` otherwise."""
    if isinstance(raw, str):
        items: list[Any] = [raw]
    elif isinstance(raw, list) and raw and all(isinstance(x, int) for x in raw):
        items = [raw]
    else:
        items = list(raw)  # type: ignore[call-overload]
    if not items:
        raise bad_request("input must not be empty.", param="input")
    if len(items) > max_inputs:
        raise bad_request(f"input has {len(items)} items; at most {max_inputs} are allowed per call.",
                          param="input")
    for i, item in enumerate(items):
        if isinstance(item, str) and item == "":
            raise bad_request(f"input[{i}] is an empty string.", param=f"input[{i}]")
        if isinstance(item, list) and not item:
            raise bad_request(f"input[{i}] is an empty token list.", param=f"input[{i}]")
    return items


def encode(vector: Sequence[float], fmt: str) -> list[float] | str:
    if fmt == "base64":
        return base64.b64encode(array.array("f", vector).tobytes()).decode()
    return list(vector)


@table.route("POST", "/v1/embeddings", "Embed texts as vectors.", request=p.EmbeddingRequest,
             response=p.Embeddings, errors=BODY_ERRORS,
             example={"model": DEFAULT_EMBEDDER, "input": ["hello", "world"]})
async def create_embeddings(request: Request) -> Response:
    body = await parse_body(request, EmbeddingRequest)
    settings = state_of(request).settings
    served = served_model(request, body.model, "embed")
    inputs = normalise_inputs(body.input, settings.embed_max_inputs)
    dims = int(getattr(served.loaded.model.config, "hidden_size", 0))
    if body.dimensions is not None and body.dimensions != dims:
        raise bad_request(f"The model '{body.model}' produces {dims}-dimensional vectors; "
                          f"dimensions={body.dimensions} is not supported.", param="dimensions")
    await charge_input_tokens(request, served.loaded.tokenizer, inputs)
    assert served.batcher is not None
    vectors, prompt_tokens = await served.batcher.embed(inputs)
    state_of(request).metrics.prompt_tokens.labels(model_label(served)).inc(prompt_tokens)
    state_of(request).usage.record(caller_of(request).principal, served.id, "embeddings",
                                   prompt_tokens=prompt_tokens, inputs=len(inputs))
    data = [Embedding(index=i, embedding=encode(v, body.encoding_format)) for i, v in enumerate(vectors)]
    usage = EmbeddingUsage(prompt_tokens=prompt_tokens, total_tokens=prompt_tokens)
    return mark_ignored(json_response(Embeddings(data=data, model=body.model, usage=usage)), body)

