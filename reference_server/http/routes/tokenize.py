"""`POST /v1/tokenize` and `POST /v1/detokenize`, with the tokenizer of any served model.

Useful to count tokens against a model's context before sending a prompt, and to see how a
text is split; detokenizing rejects ids outside the vocabulary instead of guessing.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from maas_sdk.protocol import Detokenized, DetokenizeRequest, Tokenized, TokenizeRequest
from reference_server.http.errors import bad_request
from reference_server.http.parsing import json_response, parse_body, served_model
from reference_server.inference import tasks as nlu


async def tokenize(request: Request) -> Response:
    body = await parse_body(request, TokenizeRequest)
    loaded = served_model(request, body.model).loaded
    tokens, strings = await request.app.state.thread_work.run(nlu.tokenize, loaded, body.text, body.add_special_tokens)
    return json_response(Tokenized(model=body.model, tokens=tokens, token_strings=strings, count=len(tokens),
                                   max_model_len=loaded.context_length))


async def detokenize(request: Request) -> Response:
    body = await parse_body(request, DetokenizeRequest)
    loaded = served_model(request, body.model).loaded
    try:
        text = await request.app.state.thread_work.run(nlu.detokenize, loaded, body.tokens)
    except nlu.NLUError as exc:
        raise bad_request(str(exc), param=exc.param) from None
    return json_response(Detokenized(model=body.model, text=text))


routes = [
    Route("/v1/tokenize", tokenize, methods=["POST"]),
    Route("/v1/detokenize", detokenize, methods=["POST"]),
]
