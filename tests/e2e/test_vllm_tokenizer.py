"""vLLM's tokenizer routes at the server root, in vLLM's shapes, keyed like `/v1`."""

from __future__ import annotations

from typing import Any

import httpx

from reference_server.testing import ServerProcess
from tests.constants import API_KEY, EMBEDDER, GENERATOR

AUTH = {"authorization": f"Bearer {API_KEY}"}


def post(server: ServerProcess, path: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{server.url}{path}", json=body, headers=AUTH, timeout=60)


def test_tokenize_detokenize_and_info_in_vllm_shapes(server: ServerProcess) -> None:
    r = post(server, "/tokenize", {"prompt": "Hello world", "add_special_tokens": False, "return_token_strs": True})
    assert r.status_code == 200, r.text
    body = r.json()
    ours = post(server, "/v1/tokenize", {"model": GENERATOR, "text": "Hello world", "add_special_tokens": False})
    assert body["tokens"] == ours.json()["tokens"] and body["count"] == len(body["tokens"])
    assert body["max_model_len"] == ours.json()["max_model_len"] and len(body["token_strs"]) == body["count"]
    back = post(server, "/detokenize", {"tokens": body["tokens"]})
    assert back.json() == {"prompt": "Hello world"}
    info = httpx.get(f"{server.url}/tokenizer_info", headers=AUTH, timeout=30).json()
    assert info["model"] == GENERATOR and info["eos_token"] == "<|im_end|>" and info["tokenizer_class"]
    assert "{%" in info["chat_template"]
    embedder = httpx.get(f"{server.url}/tokenizer_info", params={"model": EMBEDDER}, headers=AUTH, timeout=30)
    assert embedder.json()["model"] == EMBEDDER


def test_tokenize_messages_matches_the_chat_prompt(server: ServerProcess) -> None:
    messages = [{"role": "user", "content": "Hi"}]
    r = post(server, "/tokenize", {"model": GENERATOR, "messages": messages})
    assert r.status_code == 200, r.text
    chat = httpx.post(f"{server.base_url}/chat/completions", headers=AUTH, timeout=60,
                      json={"model": GENERATOR, "messages": messages, "max_tokens": 1})
    assert r.json()["count"] == chat.json()["usage"]["prompt_tokens"]


def test_root_tokenizer_routes_need_the_key_and_valid_input(server: ServerProcess) -> None:
    assert httpx.get(f"{server.url}/tokenizer_info", timeout=30).status_code == 401
    assert httpx.post(f"{server.url}/tokenize", json={"prompt": "x"}, timeout=30).status_code == 401
    both = post(server, "/tokenize", {"prompt": "x", "messages": [{"role": "user", "content": "x"}]})
    assert both.status_code == 400
    bad = post(server, "/detokenize", {"tokens": [1, 10**8]})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "tokens"
    missing = post(server, "/tokenize", {"model": "no-such-model", "prompt": "x"})
    assert missing.status_code == 404 and missing.json()["error"]["param"] == "model"


def test_tokenize_messages_with_special_tokens_as_vllm_does(server: ServerProcess) -> None:
    # vLLM renders the conversation to text, then tokenizes it with the tokenizer's special tokens.
    messages = [{"role": "user", "content": "Hi"}]
    plain = post(server, "/tokenize", {"model": GENERATOR, "messages": messages})
    special = post(server, "/tokenize", {"model": GENERATOR, "messages": messages, "add_special_tokens": True})
    assert special.status_code == 200, special.text
    # This tokenizer adds no special tokens of its own: the same ids either way.
    assert special.json()["tokens"] == plain.json()["tokens"]
