"""`POST /v1/tokenize` and `POST /v1/detokenize`, with the tokenizer of any served model, and
vLLM's `POST /tokenize`, `POST /detokenize` and `GET /tokenizer_info` at the root, in vLLM's
shapes (`model` optional: the first generator), for clients written against vLLM.

Useful to count tokens against a model's context before sending a prompt, and to see how a
text is split; detokenizing rejects ids outside the vocabulary instead of guessing.
"""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from maas_sdk.protocol import (
    Detokenized,
    DetokenizeRequest,
    Tokenized,
    TokenizeRequest,
    TokenizerInfo,
    VLLMDetokenizeRequest,
    VLLMDetokenizeResponse,
    VLLMTokenizeRequest,
    VLLMTokenizeResponse,
)
from reference_server.http.errors import bad_request, not_found
from reference_server.http.middleware.auth import caller_of, require_model
from reference_server.http.parsing import json_response, parse_body
from reference_server.http.routes.chat import apply_template
from reference_server.inference import tasks as nlu
from reference_server.inference.registry import ServedModel


async def tokenize(request: Request) -> Response:
    body = await parse_body(request, TokenizeRequest)
    loaded = request.app.state.registry.get(body.model).loaded
    tokens, strings = await asyncio.to_thread(nlu.tokenize, loaded, body.text, body.add_special_tokens)
    return json_response(Tokenized(model=body.model, tokens=tokens, token_strings=strings, count=len(tokens),
                                   max_model_len=loaded.context_length))


async def detokenize(request: Request) -> Response:
    body = await parse_body(request, DetokenizeRequest)
    loaded = request.app.state.registry.get(body.model).loaded
    try:
        text = await asyncio.to_thread(nlu.detokenize, loaded, body.tokens)
    except nlu.NLUError as exc:
        raise bad_request(str(exc), param=exc.param) from None
    return json_response(Detokenized(model=body.model, text=text))


def _model_or_default(request: Request, model_id: str | None) -> ServedModel:
    """The named model, or the first generator the caller may use (vLLM serves one model, so
    its clients often leave `model` out)."""
    registry = request.app.state.registry
    if model_id is not None:
        require_model(request, model_id)
        served: ServedModel = registry.get(model_id)
        return served
    caller = caller_of(request)
    for served in registry.list():
        if served.task == "generate" and caller.may_use(served.id):
            return served
    raise not_found("No generative model is served; name one with model.", param="model",
                    code="model_not_found")


async def vllm_tokenize(request: Request) -> Response:
    body = await parse_body(request, VLLMTokenizeRequest)
    loaded = _model_or_default(request, body.model).loaded
    if body.messages is not None:
        turns = [{"role": "system" if m.role == "developer" else m.role, "content": m.text()}
                 for m in body.messages]
        tokens = apply_template(loaded.tokenizer, turns, add_generation_prompt=body.add_generation_prompt
                                and not body.continue_final_message,
                                continue_final_message=body.continue_final_message)
        if body.add_special_tokens:
            tokens = list(loaded.tokenizer.build_inputs_with_special_tokens(tokens))
    else:
        tokens, _ = await asyncio.to_thread(nlu.tokenize, loaded, body.prompt or "",
                                            body.add_special_tokens is not False)
    strs = [str(t) for t in loaded.tokenizer.convert_ids_to_tokens(tokens)] if body.return_token_strs else None
    return json_response(VLLMTokenizeResponse(count=len(tokens), max_model_len=loaded.context_length,
                                              tokens=tokens, token_strs=strs))


async def vllm_detokenize(request: Request) -> Response:
    body = await parse_body(request, VLLMDetokenizeRequest)
    loaded = _model_or_default(request, body.model).loaded
    try:
        text = await asyncio.to_thread(nlu.detokenize, loaded, body.tokens)
    except nlu.NLUError as exc:
        raise bad_request(str(exc), param=exc.param) from None
    return json_response(VLLMDetokenizeResponse(prompt=text))


async def tokenizer_info(request: Request) -> Response:
    """The tokenizer's configuration (`?model=` to choose; default the first generator)."""
    served = _model_or_default(request, request.query_params.get("model"))
    tokenizer = served.loaded.tokenizer

    def token(name: str) -> str | None:
        value = getattr(tokenizer, name, None)
        return str(value) if value is not None else None

    template = getattr(tokenizer, "chat_template", None)
    return json_response(TokenizerInfo(
        tokenizer_class=type(tokenizer).__name__, model=served.id, vocab_size=len(tokenizer),
        model_max_length=served.loaded.context_length, eos_token=token("eos_token"), bos_token=token("bos_token"),
        pad_token=token("pad_token"), unk_token=token("unk_token"),
        chat_template=template if isinstance(template, str) else None,
    ))


routes = [
    Route("/v1/tokenize", tokenize, methods=["POST"]),
    Route("/v1/detokenize", detokenize, methods=["POST"]),
    Route("/tokenize", vllm_tokenize, methods=["POST"]),
    Route("/detokenize", vllm_detokenize, methods=["POST"]),
    Route("/tokenizer_info", tokenizer_info, methods=["GET"]),
]
