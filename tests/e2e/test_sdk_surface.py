"""End to end, over real HTTP against the real model: pages, raw and streaming responses,
stream helpers, logprobs, n, and `score()`, through the SDK, sync and async."""

from __future__ import annotations

import json
import math

import pytest

from maas_sdk import (
    AsyncMaaS,
    AsyncPage,
    ChatCompletion,
    Generation,
    MaaS,
    Model,
    Page,
    RawResponse,
    Stream,
    StreamedResponse,
)
from tests.constants import EMBEDDER, GENERATOR

PROMPT = "The three primary colors are"


def test_models_and_files_pages_iterate_their_items(client: MaaS) -> None:
    models = client.models.list()
    assert isinstance(models, Page)
    assert all(isinstance(m, Model) for m in models)
    assert {GENERATOR, EMBEDDER} <= {m.id for m in models}
    uploads = [client.files.upload(json.dumps({"prompt": f"p{i}", "completion": "c"}).encode() + b"\n",
                                   filename=f"page-{i}.jsonl", purpose="fine-tune") for i in range(3)]
    ours = {u.id for u in uploads}
    first = client.files.list(limit=1)
    assert len(first.data) == 1 and first.has_next_page()
    pages = list(first.iter_pages())
    assert len(pages) >= 3 and all(len(p.data) == 1 for p in pages)
    walked = [f.id for f in client.files.list(limit=2)]
    assert ours <= set(walked) and len(walked) == len(set(walked)) == len(pages)
    for upload in uploads:
        client.files.delete(upload.id)


async def test_async_pages(async_client: AsyncMaaS) -> None:
    assert GENERATOR in [m.id async for m in async_client.models.list()]
    page = await async_client.models.list()
    assert isinstance(page, AsyncPage) and GENERATOR in {m.id for m in page.data}


def test_raw_response_carries_headers_and_parses(client: MaaS) -> None:
    raw = client.with_raw_response.generate(PROMPT, model=GENERATOR, max_tokens=4, temperature=0)
    assert isinstance(raw, RawResponse) and raw.status_code == 200
    assert raw.headers["content-type"].startswith("application/json")
    result = raw.parse()
    assert isinstance(result, Generation) and result.request_id == raw.headers["x-request-id"]
    assert result.text == client.generate(PROMPT, model=GENERATOR, max_tokens=4, temperature=0).text


def test_streaming_response_of_a_chat_stream(client: MaaS) -> None:
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    whole = client.chat(messages, model=GENERATOR, max_tokens=12, temperature=0)
    with client.with_streaming_response.chat(messages, model=GENERATOR, max_tokens=12, temperature=0,
                                             stream=True) as response:
        assert isinstance(response, StreamedResponse)
        assert response.headers["content-type"].startswith("text/event-stream")
        stream = response.parse()
        assert isinstance(stream, Stream)
        assert "".join(stream.text_stream) == whole.text


def test_final_completion_of_a_stream_equals_the_unstreamed_answer(client: MaaS) -> None:
    whole = client.generate(PROMPT, model=GENERATOR, max_tokens=10, temperature=0, logprobs=2)
    with client.generate(PROMPT, model=GENERATOR, max_tokens=10, temperature=0, logprobs=2, stream=True,
                         include_usage=True) as stream:
        final = stream.get_final_completion()
    assert isinstance(final, Generation)
    assert final.text == whole.text and final.finish_reason == whole.finish_reason
    assert final.usage == whole.usage
    streamed, direct = final.choices[0].logprobs, whole.choices[0].logprobs
    assert streamed is not None and direct is not None
    assert streamed.tokens == direct.tokens
    assert streamed.text_offset == direct.text_offset
    for a, b in zip(streamed.token_logprobs, direct.token_logprobs):
        assert a is not None and b is not None and math.isclose(a, b, abs_tol=1e-4)


def test_chat_logprobs_of_greedy_tokens_are_the_best_alternatives(client: MaaS) -> None:
    reply = client.chat([{"role": "user", "content": "Name a color."}], model=GENERATOR, max_tokens=6,
                        temperature=0, logprobs=True, top_logprobs=3)
    assert isinstance(reply, ChatCompletion)
    logprobs = reply.choices[0].logprobs
    assert logprobs is not None and logprobs.content
    assert "".join(t.token for t in logprobs.content) == reply.text
    for token in logprobs.content:
        assert len(token.top_logprobs) == 3
        assert math.isclose(token.logprob, max(alt.logprob for alt in token.top_logprobs), abs_tol=1e-5)


def test_n_choices(client: MaaS) -> None:
    result = client.generate(PROMPT, model=GENERATOR, max_tokens=6, temperature=1.0, seed=7, n=3)
    assert [c.index for c in result.choices] == [0, 1, 2]
    assert result.usage is not None and result.usage.completion_tokens <= 18


def test_score_of_a_greedy_continuation_matches_its_generation(client: MaaS) -> None:
    generated = client.generate(PROMPT, model=GENERATOR, max_tokens=6, temperature=0, logprobs=1)
    logprobs = generated.choices[0].logprobs
    assert logprobs is not None
    score = client.score(PROMPT, generated.text, model=GENERATOR)
    assert score.is_greedy is True
    assert "".join(score.tokens) == generated.text
    assert score.token_count == len(logprobs.tokens)
    expected = [v for v in logprobs.token_logprobs if v is not None]
    assert score.token_logprobs == pytest.approx(expected, abs=1e-3)
    assert score.logprob == pytest.approx(sum(expected), abs=1e-3)

    unlikely = client.score(PROMPT, " purple elephants singing", model=GENERATOR)
    assert unlikely.is_greedy is False
    assert unlikely.logprob < score.logprob


async def test_async_stream_helpers_and_score(async_client: AsyncMaaS, client: MaaS) -> None:
    whole = client.generate(PROMPT, model=GENERATOR, max_tokens=5, temperature=0)
    stream = await async_client.generate(PROMPT, model=GENERATOR, max_tokens=5, temperature=0, stream=True)
    async with stream:
        assert "".join([text async for text in stream.text_stream]) == whole.text
    stream = await async_client.generate(PROMPT, model=GENERATOR, max_tokens=5, temperature=0, stream=True)
    async with stream:
        final = await stream.get_final_completion()
    assert final.text == whole.text
    score = await async_client.score(PROMPT, whole.text, model=GENERATOR)
    assert score.is_greedy is True
    raw = await async_client.with_raw_response.score(PROMPT, whole.text, model=GENERATOR)
    assert raw.parse().logprob == pytest.approx(score.logprob, abs=1e-6)


@pytest.mark.slow
def test_a_streamed_answer_with_several_choices_assembles_to_the_unstreamed_one(client: MaaS) -> None:
    """Chunks of two sampled choices arrive interleaved: the final completion puts each
    choice's pieces together under its own index, shaped as the call without `stream` answers.
    (The texts are compared with the chunks, not with a second, unstreamed call: two seeded
    calls agree only up to floating-point batch effects, see the reference server's `seed`.)"""
    kwargs = {"model": GENERATOR, "max_tokens": 8, "temperature": 1.0, "seed": 5, "n": 2}
    whole = client.generate(PROMPT, **kwargs)
    pieces: dict[int, list[str]] = {0: [], 1: []}
    with client.generate(PROMPT, stream=True, **kwargs) as stream:
        for chunk in stream:
            for choice in chunk.choices:
                pieces[choice.index].append(choice.text)
        final = stream.get_final_completion()
    assert [c.index for c in final.choices] == [c.index for c in whole.choices] == [0, 1]
    assert [c.text for c in final.choices] == ["".join(pieces[0]), "".join(pieces[1])]
    assert all(len(p) >= 2 for p in pieces.values()), pieces  # streamed piece by piece
    assert final.choices[0].text != final.choices[1].text  # each choice has its own seed
    assert all(c.finish_reason in ("stop", "length") for c in [*final.choices, *whole.choices])
    messages = [{"role": "user", "content": "Tell me a word."}]
    reply = client.chat(messages, **kwargs)
    parts: dict[int, list[str]] = {0: [], 1: []}
    with client.chat(messages, stream=True, **kwargs) as chat_stream:
        for delta in chat_stream:
            for choice in delta.choices:
                parts[choice.index].append(choice.delta.content or "")
        assembled = chat_stream.get_final_completion()
    assert [c.index for c in assembled.choices] == [c.index for c in reply.choices] == [0, 1]
    assert [c.message.content for c in assembled.choices] == ["".join(parts[0]), "".join(parts[1])]
    assert all(c.message.role == "assistant" for c in [*assembled.choices, *reply.choices])
