"""The official openai client against the real server: every parameter OpenAI documents for
completions and chat completions, plus vLLM's sampling controls, sync and async, streamed and
not. Logprobs are checked for correctness, not only shape: a greedy token's logprob equals the
best of its alternatives, and echoed prompt logprobs agree with our evaluation's loss, whether
the request was batched with others or not."""

from __future__ import annotations

import asyncio
import json
import math
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from reference_server.testing import ServerProcess
from tests.constants import API_KEY, GENERATOR

PROMPT = "The capital of France is"
CHAT = [{"role": "user", "content": "Say hello."}]


@pytest.fixture(scope="module")
def oai(server: ServerProcess) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(api_key=API_KEY, base_url=server.base_url, max_retries=0, timeout=120) as c:
        yield c


def raw_post(server: ServerProcess, path: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{server.base_url}{path}", json=body, timeout=120,
                      headers={"authorization": f"Bearer {API_KEY}"})


def sse_payloads(server: ServerProcess, path: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    with httpx.stream("POST", f"{server.base_url}{path}", json=body, timeout=120,
                      headers={"authorization": f"Bearer {API_KEY}"}) as r:
        assert r.status_code == 200, r.read()
        lines = [line[6:] for line in r.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "[DONE]"
    return [json.loads(line) for line in lines[:-1]]


def tokens_of(oai: openai.OpenAI, text: str) -> list[int]:
    r = oai.post("/tokenize", cast_to=httpx.Response, body={"model": GENERATOR, "text": text})
    return list(r.json()["tokens"])


# ----- completions: logprobs, echo, scoring, token prompts -----


def test_completion_logprobs_and_echo(oai: openai.OpenAI) -> None:
    out = oai.completions.create(model=GENERATOR, prompt=PROMPT, max_tokens=3, temperature=0, logprobs=2,
                                 echo=True)
    choice = out.choices[0]
    lp = choice.logprobs
    assert lp is not None and lp.tokens and lp.token_logprobs and lp.top_logprobs and lp.text_offset
    n_prompt = len(tokens_of(oai, PROMPT))
    assert len(lp.tokens) == n_prompt + 3 == out.usage.prompt_tokens + out.usage.completion_tokens  # type: ignore[union-attr]
    assert lp.token_logprobs[0] is None and lp.top_logprobs[0] is None
    assert choice.text.startswith(PROMPT) and "".join(lp.tokens) == choice.text
    assert lp.text_offset == [sum(len(t) for t in lp.tokens[:i]) for i in range(len(lp.tokens))]
    for token, value, top in zip(lp.tokens[n_prompt:], lp.token_logprobs[n_prompt:], lp.top_logprobs[n_prompt:]):
        assert top is not None and value is not None and len(top) <= 3 and top[token] == value
        assert value == max(top.values())  # greedy: the chosen token is the most likely, exactly
    assert out.system_fingerprint
    plain = oai.completions.create(model=GENERATOR, prompt=PROMPT, max_tokens=3, temperature=0, logprobs=0)
    assert plain.choices[0].text == choice.text[len(PROMPT):]
    assert plain.choices[0].logprobs.text_offset[0] == len(PROMPT)  # type: ignore[union-attr]
    assert plain.choices[0].logprobs.token_logprobs == pytest.approx(lp.token_logprobs[n_prompt:], abs=1e-4)  # type: ignore[union-attr]


def test_max_tokens_zero_scores_token_id_prompts(oai: openai.OpenAI) -> None:
    first, second = tokens_of(oai, "Paris is in France"), tokens_of(oai, "Berlin")
    out = oai.completions.create(model=GENERATOR, prompt=[first, second], max_tokens=0, echo=True, logprobs=1)
    assert [c.text for c in out.choices] == ["Paris is in France", "Berlin"]
    assert [c.finish_reason for c in out.choices] == ["length", "length"]
    assert len(out.choices[0].logprobs.tokens) == len(first)  # type: ignore[union-attr]
    assert out.usage is not None
    assert (out.usage.prompt_tokens, out.usage.completion_tokens) == (len(first) + len(second), 0)
    single = oai.completions.create(model=GENERATOR, prompt=first, max_tokens=2, temperature=0)
    text = oai.completions.create(model=GENERATOR, prompt="Paris is in France", max_tokens=2, temperature=0)
    assert single.choices[0].text == text.choices[0].text


def test_bad_token_ids_and_scoring_without_echo_are_400(oai: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as bad:
        oai.completions.create(model=GENERATOR, prompt=[[1, 2], [3, 10**7]], max_tokens=1)
    assert bad.value.body["param"] == "prompt" and "10000000" in bad.value.body["message"]  # type: ignore[index]
    assert "prompt[1][1]" in bad.value.body["message"]  # type: ignore[index]
    with pytest.raises(openai.BadRequestError) as zero:
        oai.completions.create(model=GENERATOR, prompt=PROMPT, max_tokens=0)
    assert zero.value.body["param"] == "max_tokens"  # type: ignore[index]
    for kwargs, param in (({"logprobs": 21}, "logprobs"), ({"n": 9}, "n"), ({"n": 3, "best_of": 2}, "best_of"),
                          ({"logit_bias": {"x": 1}}, "logit_bias"), ({"logit_bias": {"5": 101}}, "logit_bias"),
                          ({"stop": [str(i) for i in range(17)]}, "stop")):
        with pytest.raises(openai.BadRequestError) as info:
            oai.completions.create(model=GENERATOR, prompt=PROMPT, max_tokens=1, **kwargs)  # type: ignore[arg-type]
        assert info.value.body["param"] == param, kwargs  # type: ignore[index]


def test_n_choices_have_their_own_reproducible_seeds(oai: openai.OpenAI) -> None:
    args: dict[str, Any] = {"model": GENERATOR, "prompt": "My favourite animal is", "max_tokens": 6,
                            "temperature": 1.0, "seed": 7}
    three = oai.completions.create(n=3, **args)
    assert [c.index for c in three.choices] == [0, 1, 2]
    assert len({c.text for c in three.choices}) > 1
    again = oai.completions.create(n=3, **args)
    assert [c.text for c in again.choices] == [c.text for c in three.choices]
    one = oai.completions.create(n=1, **args)
    assert one.choices[0].text == three.choices[0].text
    assert three.usage is not None and three.usage.prompt_tokens == one.usage.prompt_tokens  # type: ignore[union-attr]


def test_best_of_returns_the_most_likely_candidates(oai: openai.OpenAI) -> None:
    args: dict[str, Any] = {"model": GENERATOR, "prompt": "A colour:", "max_tokens": 4, "temperature": 1.0,
                            "seed": 11, "logprobs": 0}
    candidates = oai.completions.create(n=4, **args).choices
    best = oai.completions.create(n=2, best_of=4, **args).choices
    ranked = sorted(candidates, key=lambda c: -sum(c.logprobs.token_logprobs))  # type: ignore[union-attr, arg-type]
    assert [c.text for c in best] == [c.text for c in ranked[:2]]
    assert [c.index for c in best] == [0, 1]


def test_streamed_completion_choices_and_logprobs_match(oai: openai.OpenAI) -> None:
    args: dict[str, Any] = {"model": GENERATOR, "prompt": PROMPT, "max_tokens": 5, "temperature": 0.8, "seed": 3,
                            "n": 2, "logprobs": 1, "echo": True}
    whole = oai.completions.create(**args)
    texts: dict[int, str] = defaultdict(str)
    logprobs: dict[int, list[float | None]] = defaultdict(list)
    chunks = list(oai.completions.create(stream=True, stream_options={"include_usage": True}, **args))
    for chunk in chunks[:-1]:
        (choice,) = chunk.choices
        texts[choice.index] += choice.text
        if choice.logprobs is not None:
            logprobs[choice.index] += choice.logprobs.token_logprobs or []
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert all(c.usage is None for c in chunks[:-1])
    for choice in whole.choices:
        assert texts[choice.index] == choice.text
        assert logprobs[choice.index] == choice.logprobs.token_logprobs  # type: ignore[union-attr]


# ----- chat: logprobs, n, streaming shape -----


def test_chat_logprobs_and_top_logprobs(oai: openai.OpenAI) -> None:
    out = oai.chat.completions.create(model=GENERATOR, messages=CHAT, max_tokens=4, temperature=0,  # type: ignore[arg-type]
                                      logprobs=True, top_logprobs=3)
    content = out.choices[0].logprobs.content  # type: ignore[union-attr]
    assert content is not None and len(content) == out.usage.completion_tokens  # type: ignore[union-attr]
    assert "".join(t.token for t in content).startswith(out.choices[0].message.content or "\0")
    for token in content:
        assert len(token.top_logprobs) == 3
        assert token.logprob == token.top_logprobs[0].logprob == max(t.logprob for t in token.top_logprobs)
        assert bytes(token.bytes or []).decode() == token.token
    without = oai.chat.completions.create(model=GENERATOR, messages=CHAT, max_tokens=4, temperature=0)  # type: ignore[arg-type]
    assert without.choices[0].logprobs is None
    assert without.choices[0].message.content == out.choices[0].message.content
    with pytest.raises(openai.BadRequestError) as info:
        oai.chat.completions.create(model=GENERATOR, messages=CHAT, max_tokens=2, top_logprobs=2)  # type: ignore[arg-type]
    assert info.value.body["param"] == "top_logprobs"  # type: ignore[index]


def test_chat_n_streamed_carries_indices_logprobs_and_openai_shapes(server: ServerProcess, oai: openai.OpenAI) -> None:
    body = {"model": GENERATOR, "messages": CHAT, "max_tokens": 4, "temperature": 0.9, "seed": 5, "n": 2,
            "logprobs": True, "stream": True, "stream_options": {"include_usage": True}}
    payloads = sse_payloads(server, "/chat/completions", body)
    whole = oai.chat.completions.create(**{**body, "stream": False, "stream_options": None})  # type: ignore[call-overload]
    texts: dict[int, str] = defaultdict(str)
    tokens: dict[int, int] = defaultdict(int)
    roles: dict[int, int] = defaultdict(int)
    for p in payloads[:-1]:
        assert "usage" not in p and p["system_fingerprint"]
        (choice,) = p["choices"]
        roles[choice["index"]] += "role" in choice["delta"]
        texts[choice["index"]] += choice["delta"].get("content") or ""
        if choice["logprobs"]:
            tokens[choice["index"]] += len(choice["logprobs"]["content"])
    assert payloads[-1]["choices"] == [] and payloads[-1]["usage"]["completion_tokens"] == sum(tokens.values())
    assert dict(roles) == {0: 1, 1: 1}  # role only on each choice's first chunk
    assert [texts[i] for i in (0, 1)] == [c.message.content for c in whole.choices]
    raw = raw_post(server, "/chat/completions", {**body, "stream": False, "stream_options": None}).json()
    assert "name" not in raw["choices"][0]["message"] and raw["system_fingerprint"]


# ----- every documented field understood; nulls are defaults -----


def test_nulls_mean_defaults_and_ignored_fields_are_reported(server: ServerProcess) -> None:
    nulls = {k: None for k in ("logprobs", "n", "temperature", "top_p", "stop", "seed", "stream", "best_of",
                               "suffix", "logit_bias", "presence_penalty", "frequency_penalty", "user", "echo",
                               "stream_options")}
    r = raw_post(server, "/completions", {"model": GENERATOR, "prompt": "Hi", "max_tokens": 2, **nulls})
    assert r.status_code == 200, r.text
    assert "x-maas-ignored-params" not in r.headers
    chat_nulls = {k: None for k in ("logprobs", "top_logprobs", "n", "max_completion_tokens", "store", "metadata",
                                    "service_tier", "modalities", "audio", "prediction", "reasoning_effort",
                                    "verbosity", "web_search_options", "prompt_cache_key", "safety_identifier",
                                    "temperature", "seed", "user", "logit_bias")}
    r = raw_post(server, "/chat/completions", {"model": GENERATOR, "messages": CHAT, "max_tokens": 2, **chat_nulls})
    assert r.status_code == 200, r.text
    ignored = {"store": True, "metadata": {"k": "v"}, "service_tier": "auto", "user": "u-1"}
    r = raw_post(server, "/chat/completions", {"model": GENERATOR, "messages": CHAT, "max_tokens": 2, **ignored})
    assert r.status_code == 200 and r.headers["x-maas-ignored-params"] == "store,metadata,service_tier,user"
    r = raw_post(server, "/completions", {"model": GENERATOR, "prompt": "Hi", "max_tokens": 2, "suffix": "!"})
    assert r.headers["x-maas-ignored-params"] == "suffix"
    r = raw_post(server, "/chat/completions", {"model": GENERATOR, "messages": CHAT, "frobnicate": None})
    assert r.status_code == 400 and r.json()["error"]["param"] == "frobnicate"


def test_langchain_style_null_logprobs_through_the_client(oai: openai.OpenAI) -> None:
    out = oai.completions.create(model=GENERATOR, prompt="Hi", max_tokens=2, extra_body={"logprobs": None})
    assert out.choices[0].logprobs is None


# ----- sampling controls -----


def test_logit_bias_stop_token_ids_and_penalties(oai: openai.OpenAI) -> None:
    base: dict[str, Any] = {"model": GENERATOR, "prompt": PROMPT, "temperature": 0}
    forced = tokens_of(oai, " banana")[0]
    out = oai.completions.create(max_tokens=3, logit_bias={str(forced): 100}, **base)
    assert out.choices[0].text == " banana" * 3
    greedy = oai.completions.create(max_tokens=3, logprobs=0, **base)
    first_token = tokens_of(oai, greedy.choices[0].text)[0]
    stopped = oai.completions.create(max_tokens=3, extra_body={"stop_token_ids": [first_token]}, **base)
    assert (stopped.choices[0].text, stopped.choices[0].finish_reason) == ("", "stop")
    loop_prompt = "a, a, a, a, a, a,"
    looping = oai.completions.create(model=GENERATOR, prompt=loop_prompt, max_tokens=4, temperature=0)
    penalised = oai.completions.create(model=GENERATOR, prompt=loop_prompt, max_tokens=4, temperature=0,
                                       extra_body={"repetition_penalty": 5.0})
    assert looping.choices[0].text.startswith(" a, a") and "a," not in penalised.choices[0].text
    # min_p = 1 keeps only the most likely token: sampling becomes greedy.
    narrow = oai.completions.create(max_tokens=3, **{**base, "temperature": 1.5}, seed=1, extra_body={"min_p": 1.0})
    assert narrow.choices[0].text == greedy.choices[0].text
    long = oai.completions.create(model=GENERATOR, prompt="Hi", max_tokens=12, temperature=0,
                                  stop=[f"zz{i}" for i in range(16)], extra_body={"ignore_eos": True})
    assert long.usage is not None and long.usage.completion_tokens == 12


# ----- correctness: echo logprobs against the evaluation loss, batched or not -----


def test_echo_logprobs_sum_to_minus_the_evaluation_loss(oai: openai.OpenAI, server: ServerProcess,
                                                         tmp_path: Any) -> None:
    prompt, completion = "Question: what is two plus two?\nAnswer:", " Four, of course."
    path = tmp_path / "one.jsonl"
    path.write_text(json.dumps({"prompt": prompt, "completion": completion}) + "\n")
    uploaded = oai.files.create(file=path.open("rb"), purpose="evals")
    loss = oai.post("/evaluations", cast_to=httpx.Response,
                    body={"model": GENERATOR, "file": uploaded.id}).json()["metrics"]["loss"]
    eos = httpx.get(f"{server.url}/tokenizer_info", headers={"authorization": f"Bearer {API_KEY}"}).json()["eos_token"]
    text = prompt + completion + eos  # the evaluation scores the end-of-sequence token too
    scored = oai.completions.create(model=GENERATOR, prompt=text, max_tokens=0, echo=True, logprobs=0)
    lp = scored.choices[0].logprobs
    assert lp is not None and lp.text_offset is not None and lp.token_logprobs is not None
    target = [v for off, v in zip(lp.text_offset, lp.token_logprobs) if off >= len(prompt)]
    assert -sum(v for v in target if v is not None) / len(target) == pytest.approx(loss, abs=1e-3)


def test_echo_logprobs_are_the_same_batched_or_alone(oai: openai.OpenAI, server: ServerProcess) -> None:
    texts = ["The quick brown fox jumps over the lazy dog.", "Hello", "One two three four five six seven eight"]

    def score(client: openai.OpenAI, text: str) -> list[float | None]:
        out = client.completions.create(model=GENERATOR, prompt=text, max_tokens=1, temperature=0, echo=True,
                                        logprobs=1)
        return list(out.choices[0].logprobs.token_logprobs or [])  # type: ignore[union-attr]

    alone = [score(oai, t) for t in texts]

    async def together() -> list[list[float | None]]:
        async with openai.AsyncOpenAI(api_key=API_KEY, base_url=server.base_url, max_retries=0) as client:
            outs = await asyncio.gather(*(client.completions.create(
                model=GENERATOR, prompt=t, max_tokens=1, temperature=0, echo=True, logprobs=1) for t in texts * 2))
        return [list(o.choices[0].logprobs.token_logprobs or []) for o in outs]  # type: ignore[union-attr]

    batched = asyncio.run(together())
    for a, b in zip(alone * 2, batched):
        assert len(a) == len(b) and a[0] is None and b[0] is None
        assert all(math.isclose(x, y, abs_tol=1e-3) for x, y in zip(a[1:], b[1:]))  # type: ignore[arg-type]


# ----- async client -----


async def test_async_client_streams_chat_and_completion_logprobs(server: ServerProcess) -> None:
    async with openai.AsyncOpenAI(api_key=API_KEY, base_url=server.base_url, max_retries=0) as client:
        stream = await client.chat.completions.create(model=GENERATOR, messages=CHAT, max_tokens=4,  # type: ignore[arg-type]
                                                      temperature=0, logprobs=True, top_logprobs=1, stream=True)
        content = []
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].logprobs and chunk.choices[0].logprobs.content:
                content += chunk.choices[0].logprobs.content
        whole = await client.chat.completions.create(model=GENERATOR, messages=CHAT, max_tokens=4,  # type: ignore[arg-type]
                                                     temperature=0, logprobs=True, top_logprobs=1)
        assert [t.token for t in content] == [t.token for t in whole.choices[0].logprobs.content or []]  # type: ignore[union-attr]
        comp = await client.completions.create(model=GENERATOR, prompt=PROMPT, max_tokens=2, temperature=0,
                                               logprobs=1, echo=True, n=2)
        assert [c.index for c in comp.choices] == [0, 1] and comp.choices[0].text == comp.choices[1].text
        scored = await client.completions.create(model=GENERATOR, prompt=[1, 2, 3], max_tokens=0, echo=True,
                                                 logprobs=2)
        assert scored.choices[0].logprobs is not None and len(scored.choices[0].logprobs.tokens or []) == 3
