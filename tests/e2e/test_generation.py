"""End to end: completions and chat against the real SmolLM2 model, sync and async,
streamed and not, over real HTTP."""

from __future__ import annotations

import httpx
import pytest

from maas_sdk import (
    AsyncMaaS,
    AuthenticationError,
    BadRequestError,
    ChatCompletionChunk,
    Generation,
    GenerationChunk,
    MaaS,
    NotFoundError,
)
from tests.constants import API_KEY, GENERATOR

PROMPT = "The three primary colors are"


def test_greedy_generation_is_deterministic(client: MaaS) -> None:
    first = client.generate(PROMPT, model=GENERATOR, max_tokens=12, temperature=0)
    second = client.generate(PROMPT, model=GENERATOR, max_tokens=12, temperature=0)
    assert isinstance(first, Generation)
    assert first.text == second.text
    assert first.text.strip()
    assert first.usage is not None and first.usage.completion_tokens <= 12
    assert first.usage.prompt_tokens > 0
    assert first.usage.total_tokens == first.usage.prompt_tokens + first.usage.completion_tokens
    assert first.request_id and first.request_id != second.request_id


def test_max_tokens_gives_length_finish(client: MaaS) -> None:
    result = client.generate("Count from one to fifty: one, two,", model=GENERATOR, max_tokens=5, temperature=0)
    assert result.finish_reason == "length"
    assert result.usage is not None and result.usage.completion_tokens == 5


def test_stop_sequence_cuts_text(client: MaaS) -> None:
    prompt = "Count: 1, 2, 3, 4,"
    full = client.generate(prompt, model=GENERATOR, max_tokens=20, temperature=0)
    assert len(full.text) > 8
    stop = full.text[5:8]
    cut = client.generate(prompt, model=GENERATOR, max_tokens=20, temperature=0, stop=[stop])
    assert cut.finish_reason == "stop"
    assert cut.text == full.text[: full.text.index(stop)]


def test_seeded_sampling_is_reproducible(client: MaaS) -> None:
    kwargs = {"model": GENERATOR, "max_tokens": 16, "temperature": 1.0, "top_p": 0.95, "top_k": 50}
    a = client.generate("Once upon a time", seed=1234, **kwargs)
    b = client.generate("Once upon a time", seed=1234, **kwargs)
    assert a.text == b.text


def test_streamed_generation_matches_non_streamed(client: MaaS) -> None:
    whole = client.generate(PROMPT, model=GENERATOR, max_tokens=12, temperature=0)
    pieces = []
    finish = None
    with client.generate(PROMPT, model=GENERATOR, max_tokens=12, temperature=0, stream=True) as stream:
        for chunk in stream:
            assert isinstance(chunk, GenerationChunk)
            pieces.append(chunk.text)
            finish = chunk.finish_reason or finish
    assert len([p for p in pieces if p]) > 1, "tokens arrive as several chunks"
    assert "".join(pieces) == whole.text
    assert finish == whole.finish_reason


def test_chat_knows_the_capital_of_france(client: MaaS) -> None:
    reply = client.chat([{"role": "user", "content": "What is the capital of France?"}],
                        model=GENERATOR, max_tokens=30, temperature=0)
    assert "Paris" in reply.text
    assert reply.finish_reason in ("stop", "length")
    assert reply.choices[0].message.role == "assistant"


def test_chat_stream(client: MaaS) -> None:
    messages = [{"role": "system", "content": "You are concise."},
                {"role": "user", "content": "What is the capital of France?"}]
    whole = client.chat(messages, model=GENERATOR, max_tokens=30, temperature=0)
    with client.chat(messages, model=GENERATOR, max_tokens=30, temperature=0, stream=True) as stream:
        chunks = list(stream)
    assert all(isinstance(c, ChatCompletionChunk) for c in chunks)
    assert "".join(c.text for c in chunks) == whole.text
    assert chunks[-1].finish_reason == whole.finish_reason


def test_stream_usage_chunk(server: object, client: MaaS) -> None:
    with client.generate(PROMPT, model=GENERATOR, max_tokens=6, temperature=0, stream=True,
                         extra_body={"stream_options": {"include_usage": True}}) as stream:
        chunks = list(stream)
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 6
    assert chunks[-1].choices == []


def test_unknown_model_is_not_found(client: MaaS) -> None:
    with pytest.raises(NotFoundError) as info:
        client.generate("hi", model="no-such-model", max_tokens=2)
    assert info.value.status_code == 404
    assert info.value.param == "model"
    assert info.value.request_id


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"temperature": 5.0}, "temperature"),
        ({"max_tokens": -1}, "max_tokens"),
        ({"top_p": 0.0}, "top_p"),
        ({"max_tokens": 10_000_000}, "max_tokens"),
        ({"extra_body": {"n": 9}}, "n"),
        ({"extra_body": {"max_tokenz": 3}}, "max_tokenz"),
        ({"stop": [f"s{i}" for i in range(17)]}, "stop"),
    ],
)
def test_bad_parameter_is_a_400_naming_it(client: MaaS, kwargs: dict, param: str) -> None:
    with pytest.raises(BadRequestError) as info:
        client.generate("hi", model=GENERATOR, **kwargs)
    assert info.value.status_code == 400
    assert info.value.param == param
    assert param in str(info.value)


def test_wrong_key_is_rejected(server: object) -> None:
    base_url = server.base_url  # type: ignore[attr-defined]
    with MaaS(api_key="sk-wrong", base_url=base_url, max_retries=0) as bad, \
            pytest.raises(AuthenticationError) as info:
        bad.models.list()
    assert info.value.status_code == 401


def test_raw_http_shapes_are_openai_compatible(server: object) -> None:
    base_url = server.base_url  # type: ignore[attr-defined]
    headers = {"authorization": f"Bearer {API_KEY}"}
    r = httpx.post(f"{base_url}/completions", headers=headers, timeout=60,
                   json={"model": GENERATOR, "prompt": "Hello", "max_tokens": 3, "temperature": 0})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "text_completion"
    assert set(body["usage"]) >= {"prompt_tokens", "completion_tokens", "total_tokens"}
    assert r.headers["x-request-id"]
    r = httpx.post(f"{base_url}/completions", headers={**headers, "content-type": "application/json"},
                   content=b"{not json", timeout=10)
    assert r.status_code == 400
    assert r.json()["error"]["param"] == "body"
    r = httpx.get(f"{base_url}/nowhere", headers=headers, timeout=10)
    assert r.status_code == 404 and "error" in r.json() and r.headers["x-request-id"]
    with httpx.stream("POST", f"{base_url}/completions", headers=headers, timeout=60,
                      json={"model": GENERATOR, "prompt": "Hi", "max_tokens": 3, "stream": True}) as r:
        lines = [line for line in r.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    assert all(line.startswith("data: ") for line in lines)


def test_health_and_ready_need_no_key(server: object) -> None:
    url = server.url  # type: ignore[attr-defined]
    assert httpx.get(f"{url}/health").json()["status"] == "ok"
    ready = httpx.get(f"{url}/ready")
    assert ready.status_code == 200 and GENERATOR in ready.json()["models"]


async def test_async_generate_chat_and_stream(async_client: AsyncMaaS, client: MaaS) -> None:
    sync_text = client.generate(PROMPT, model=GENERATOR, max_tokens=10, temperature=0).text
    result = await async_client.generate(PROMPT, model=GENERATOR, max_tokens=10, temperature=0)
    assert result.text == sync_text
    stream = await async_client.generate(PROMPT, model=GENERATOR, max_tokens=10, temperature=0, stream=True)
    async with stream:
        text = "".join([chunk.text async for chunk in stream])
    assert text == sync_text
    reply = await async_client.chat([{"role": "user", "content": "What is the capital of France?"}],
                                    model=GENERATOR, max_tokens=30, temperature=0)
    assert "Paris" in reply.text
    chat_stream = await async_client.chat([{"role": "user", "content": "What is the capital of France?"}],
                                          model=GENERATOR, max_tokens=30, temperature=0, stream=True)
    async with chat_stream:
        streamed = "".join([c.text async for c in chat_stream])
    assert streamed == reply.text
    with pytest.raises(NotFoundError):
        await async_client.chat([{"role": "user", "content": "hi"}], model="nope", max_tokens=2)
    with pytest.raises(BadRequestError) as info:
        await async_client.generate("hi", model=GENERATOR, temperature=-1)
    assert info.value.param == "temperature"
