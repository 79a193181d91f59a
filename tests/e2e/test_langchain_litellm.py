"""langchain-openai and litellm against the real server, as their users point them at an
OpenAI-compatible endpoint: langchain's `OpenAI` sends `"logprobs": null` on every call, and both
libraries ask for `n` choices and logprobs in their own ways."""

from __future__ import annotations

import os
from typing import Any

import pytest

from reference_server.testing import ServerProcess
from tests.constants import API_KEY, GENERATOR

pytestmark = pytest.mark.slow  # importing langchain and litellm alone takes seconds

QUESTION = "What is the capital of France?"


@pytest.fixture(scope="module")
def base_url(server: ServerProcess) -> str:
    return server.base_url


def test_langchain_openai_completions(base_url: str) -> None:
    from langchain_openai import OpenAI

    llm = OpenAI(model=GENERATOR, base_url=base_url, api_key=API_KEY, max_tokens=6, temperature=0,  # type: ignore[arg-type]
                 max_retries=0)
    text = llm.invoke("The capital of France is")
    assert "Paris" in text
    assert "".join(llm.stream("The capital of France is")) == text
    two = OpenAI(model=GENERATOR, base_url=base_url, api_key=API_KEY, max_tokens=4, temperature=1.0, n=2,  # type: ignore[arg-type]
                 seed=3, max_retries=0).generate(["My favourite colour is"])
    assert len(two.generations[0]) == 2
    scored = OpenAI(model=GENERATOR, base_url=base_url, api_key=API_KEY, max_tokens=3, temperature=0,  # type: ignore[arg-type]
                    logprobs=2, max_retries=0).generate(["The capital of France is"])
    info: dict[str, Any] = scored.generations[0][0].generation_info or {}
    logprobs = info["logprobs"]
    assert len(logprobs["tokens"]) == 3 and len(logprobs["top_logprobs"][0]) >= 2
    assert logprobs["token_logprobs"][0] == max(logprobs["top_logprobs"][0].values())


def test_langchain_chat_openai(base_url: str) -> None:
    from langchain_core.messages import HumanMessage
    from langchain_openai import ChatOpenAI

    chat = ChatOpenAI(model=GENERATOR, base_url=base_url, api_key=API_KEY, max_tokens=12, temperature=0,  # type: ignore[arg-type]
                      max_retries=0)
    reply = chat.invoke(QUESTION)
    assert "Paris" in str(reply.content)
    streamed = "".join(str(chunk.content) for chunk in chat.stream(QUESTION))
    assert streamed == reply.content
    many = ChatOpenAI(model=GENERATOR, base_url=base_url, api_key=API_KEY, max_tokens=4, temperature=1.0, n=2,  # type: ignore[arg-type]
                      seed=5, max_retries=0).generate([[HumanMessage("Name a fruit.")]])
    assert len(many.generations[0]) == 2
    with_logprobs = chat.bind(logprobs=True, top_logprobs=2).invoke(QUESTION)
    content = with_logprobs.response_metadata["logprobs"]["content"]
    assert content and all(len(t["top_logprobs"]) == 2 for t in content)
    assert content[0]["logprob"] == content[0]["top_logprobs"][0]["logprob"]


def test_litellm_completion_and_text_completion(base_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no download of the price list
    os.environ.setdefault("LITELLM_LOG", "ERROR")
    import litellm

    reply = litellm.completion(model=f"openai/{GENERATOR}", api_base=base_url, api_key=API_KEY, max_tokens=12,
                               temperature=0, messages=[{"role": "user", "content": QUESTION}], n=2,
                               logprobs=True, top_logprobs=1)
    assert len(reply.choices) == 2 and "Paris" in (reply.choices[0].message.content or "")
    assert reply.choices[0].logprobs is not None
    chunks = litellm.completion(model=f"openai/{GENERATOR}", api_base=base_url, api_key=API_KEY, max_tokens=12,
                                temperature=0, messages=[{"role": "user", "content": QUESTION}], stream=True)
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == reply.choices[0].message.content
    text = litellm.text_completion(model=f"text-completion-openai/{GENERATOR}", api_base=base_url, api_key=API_KEY,
                                   prompt="The capital of France is", max_tokens=4, temperature=0, logprobs=1)
    assert "Paris" in text.choices[0].text
