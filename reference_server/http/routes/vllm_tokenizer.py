"""vLLM's tokenizer routes at the server root, in vLLM's shapes: `POST /tokenize` (a prompt, or
messages rendered with the chat template), `POST /detokenize` and `GET /tokenizer_info`.

Clients written for vLLM look for them there (lm-evaluation-harness's `local-completions`
probes `/tokenizer_info` to tokenize with the server's own tokenizer). `model` is optional:
the first generator the key may use. They need the API key like the `/v1` routes do.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from maas_sdk import protocol as p
from maas_sdk.protocol import (
    TokenizerInfo,
    VLLMDetokenizeRequest,
    VLLMDetokenizeResponse,
    VLLMTokenizeRequest,
    VLLMTokenizeResponse,
)
from reference_server.errors import NotFound
from reference_server.http.middleware.auth import caller_of, require_model
from reference_server.http.parsing import json_response, parse_body, served_model
from reference_server.http.routes.chat import apply_template, template_text
from reference_server.http.routing import BODY_ERRORS, Param, RouteTable
from reference_server.inference.registry import ServedModel
from reference_server.inference.tasks import tokens as tokenizing
from reference_server.state import state_of

table = RouteTable("nlu")


def _model_or_default(request: Request, model_id: str | None) -> ServedModel:
    """The named model, or the first generator the caller may use (vLLM serves one model, so
    its clients often leave `model` out)."""
    registry = state_of(request).registry
    if model_id is not None:
        require_model(request, model_id)
        return served_model(request, model_id)
    caller = caller_of(request)
    for served in registry.list_for(caller.principal):
        if served.task == "generate" and caller.may_use(served.id):
            return served
    raise NotFound("No generative model is served; name one with model.", param="model", code="model_not_found")


@table.route("POST", "/tokenize", "vLLM's tokenize: a prompt, or messages in the chat template.",
             request=p.VLLMTokenizeRequest, response=p.VLLMTokenizeResponse, errors=BODY_ERRORS,
             example={"prompt": "Hello world", "add_special_tokens": False})
async def vllm_tokenize(request: Request) -> Response:
    body = await parse_body(request, VLLMTokenizeRequest)
    loaded = _model_or_default(request, body.model).loaded
    if body.messages is not None:
        turns = [{"role": "system" if m.role == "developer" else m.role, "content": m.text()} for m in body.messages]
        generation_prompt = body.add_generation_prompt and not body.continue_final_message
        if body.add_special_tokens:
            # As vLLM does: the conversation as text, tokenized with the tokenizer's special tokens.
            text = await state_of(request).thread_work.run(
                lambda: template_text(loaded.tokenizer, turns, add_generation_prompt=generation_prompt,
                                      continue_final_message=body.continue_final_message))
            tokens, _ = await state_of(request).thread_work.run(tokenizing.tokenize, loaded, text, True)
        else:
            tokens = await state_of(request).thread_work.run(  # off the event loop, like every tokenization
                lambda: apply_template(loaded.tokenizer, turns, add_generation_prompt=generation_prompt,
                                       continue_final_message=body.continue_final_message))
    else:
        tokens, _ = await state_of(request).thread_work.run(tokenizing.tokenize, loaded, body.prompt or "",
                                                          body.add_special_tokens is not False)
    strs = [str(t) for t in loaded.tokenizer.convert_ids_to_tokens(tokens)] if body.return_token_strs else None
    return json_response(VLLMTokenizeResponse(count=len(tokens), max_model_len=loaded.context_length,
                                              tokens=tokens, token_strs=strs))


@table.route("POST", "/detokenize", "vLLM's detokenize.", request=p.VLLMDetokenizeRequest,
             response=p.VLLMDetokenizeResponse, errors=BODY_ERRORS, example={"tokens": [19556, 905]})
async def vllm_detokenize(request: Request) -> Response:
    body = await parse_body(request, VLLMDetokenizeRequest)
    loaded = _model_or_default(request, body.model).loaded
    text = await state_of(request).thread_work.run(tokenizing.detokenize, loaded, body.tokens)
    return json_response(VLLMDetokenizeResponse(prompt=text))


@table.route("GET", "/tokenizer_info", "vLLM's tokenizer_info: special tokens and chat template.",
             response=p.TokenizerInfo, errors=(403, 404),
             params=(Param("model", "query", {"type": "string"}, "Default: the first generator."),))
async def tokenizer_info(request: Request) -> Response:
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
