"""`POST /v1/tokenize` and `POST /v1/detokenize`, with the tokenizer of any served model.

Useful to count tokens against a model's context before sending a prompt, and to see how a
text is split; detokenizing rejects ids outside the vocabulary instead of guessing.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from maas_sdk import protocol as p
from maas_sdk.protocol import Detokenized, DetokenizeRequest, Tokenized, TokenizeRequest
from maas_sdk.protocol.vocabulary import DEFAULT_GENERATOR
from reference_server.http.parsing import json_response, parse_body, served_model
from reference_server.http.routing import BODY_ERRORS, RouteTable
from reference_server.inference.tasks import tokens as tokenizing
from reference_server.state import state_of

table = RouteTable("nlu")



@table.route("POST", "/v1/tokenize", "Split a text into a model's tokens.", request=p.TokenizeRequest,
             response=p.Tokenized, errors=BODY_ERRORS,
             example={"model": DEFAULT_GENERATOR, "text": "Hello world"})
async def tokenize(request: Request) -> Response:
    body = await parse_body(request, TokenizeRequest)
    loaded = served_model(request, body.model).loaded
    tokens, strings = await state_of(request).thread_work.run(tokenizing.tokenize, loaded, body.text, body.add_special_tokens)
    return json_response(Tokenized(model=body.model, tokens=tokens, token_strings=strings, count=len(tokens),
                                   max_model_len=loaded.context_length))


@table.route("POST", "/v1/detokenize", "Turn token ids back into text.", request=p.DetokenizeRequest,
             response=p.Detokenized, errors=BODY_ERRORS,
             example={"model": DEFAULT_GENERATOR, "tokens": [19556, 905]})
async def detokenize(request: Request) -> Response:
    body = await parse_body(request, DetokenizeRequest)
    loaded = served_model(request, body.model).loaded
    text = await state_of(request).thread_work.run(tokenizing.detokenize, loaded, body.tokens)
    return json_response(Detokenized(model=body.model, text=text))

