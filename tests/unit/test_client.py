"""Client configuration and request building: env, headers, bodies, extras, timeouts, copies, closing."""

from __future__ import annotations

import gc
import json
import weakref
from pathlib import Path
from typing import Any

import httpx
import pytest

from maas_sdk import (
    DEFAULT_BASE_URL,
    AsyncMaaS,
    ChatMessage,
    Classifications,
    Detokenized,
    Embeddings,
    Evaluation,
    FileDeleted,
    FileObject,
    Generation,
    MaaS,
    Model,
    Reranking,
    TextPair,
    Tokenized,
    __version__,
)

from .fakes import API_KEY, BASE_URL, generation, json_response, make_async_client, make_client


class Recorder:
    """Answers every request with one JSON body and keeps the requests."""

    def __init__(self, body: Any = None, content: bytes | None = None) -> None:
        self.body = generation() if body is None else body
        self.content = content
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        request.read()
        self.requests.append(request)
        if self.content is not None:
            return httpx.Response(200, content=self.content, headers={"x-request-id": "req-1"})
        return json_response(self.body)

    @property
    def last(self) -> httpx.Request:
        return self.requests[-1]

    @property
    def last_json(self) -> Any:
        return json.loads(self.last.content)


def test_default_headers() -> None:
    recorder = Recorder()
    make_client(recorder).generate("hi", model="m")
    headers = recorder.last.headers
    assert headers["authorization"] == f"Bearer {API_KEY}"
    assert headers["user-agent"] == f"maas-sdk/{__version__}"
    assert headers["accept"] == "application/json"
    assert headers["content-type"] == "application/json"


def test_env_supplies_key_and_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAAS_API_KEY", "sk-from-env")
    monkeypatch.setenv("MAAS_BASE_URL", "http://env.test/api/")
    recorder = Recorder()
    client = MaaS(http_client=httpx.Client(transport=httpx.MockTransport(recorder)))
    client.generate("hi", model="m")
    assert client.api_key == "sk-from-env"
    assert str(recorder.last.url) == "http://env.test/api/completions"
    assert recorder.last.headers["authorization"] == "Bearer sk-from-env"


def test_arguments_beat_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAAS_API_KEY", "sk-from-env")
    monkeypatch.setenv("MAAS_BASE_URL", "http://env.test/api")
    client = MaaS(api_key="sk-arg", base_url="http://arg.test/v2")
    assert (client.api_key, client.base_url) == ("sk-arg", "http://arg.test/v2")
    client.close()


def test_defaults_without_env() -> None:
    recorder = Recorder()
    client = MaaS(http_client=httpx.Client(transport=httpx.MockTransport(recorder)))
    client.generate("hi", model="m")
    assert client.base_url == DEFAULT_BASE_URL == "http://127.0.0.1:8000/v1"
    assert "authorization" not in recorder.last.headers
    assert client.timeout == httpx.Timeout(600, connect=5)
    assert client.max_retries == 2


def test_own_pool_has_the_documented_limits() -> None:
    client = MaaS()
    pool = client._http._transport._pool  # type: ignore[attr-defined]
    assert pool._max_connections == 1000
    assert pool._max_keepalive_connections == 100
    assert client._http.trust_env
    client.close()


async def test_proxies_from_the_environment_are_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.test:3128")
    with MaaS() as client:
        assert "https://" in [pattern.pattern for pattern, proxy in client._http._mounts.items() if proxy]
    async with AsyncMaaS() as async_client:
        assert "https://" in [pattern.pattern for pattern, proxy in async_client._http._mounts.items() if proxy]


def test_negative_max_retries_is_rejected() -> None:
    with pytest.raises(ValueError, match="max_retries"):
        MaaS(max_retries=-1)
    client = MaaS()
    with pytest.raises(ValueError, match="max_retries"):
        client.with_options(max_retries=-1)
    client.close()


def test_api_key_not_in_settings_repr() -> None:
    client = MaaS(api_key="sk-very-secret")
    assert "sk-very-secret" not in repr(client._settings)
    client.close()


def test_timeout_accepts_float_and_per_call_override() -> None:
    recorder = Recorder()
    client = make_client(recorder, timeout=12.5)
    assert client.timeout == httpx.Timeout(12.5)
    client.generate("hi", model="m")
    assert recorder.last.extensions["timeout"] == httpx.Timeout(12.5).as_dict()
    client.generate("hi", model="m", timeout=httpx.Timeout(3, connect=1))
    assert recorder.last.extensions["timeout"] == httpx.Timeout(3, connect=1).as_dict()
    client.generate("hi", model="m", timeout=2)
    assert recorder.last.extensions["timeout"]["read"] == 2


def test_only_parameters_set_are_sent() -> None:
    recorder = Recorder()
    make_client(recorder).generate("hi", model="m", temperature=None, max_tokens=None, top_k=None)
    assert recorder.last_json == {"model": "m", "prompt": "hi"}


def test_all_sampling_parameters_are_sent() -> None:
    recorder = Recorder()
    make_client(recorder).generate(
        ["a", "b"], model="m", max_tokens=5, temperature=0.0, top_p=0.9, top_k=40, stop=("x", "y"), seed=7,
        presence_penalty=0.5, frequency_penalty=-0.5, min_tokens=2, ignore_eos=True, echo=False, user="u",
    )
    assert recorder.last_json == {
        "model": "m", "prompt": ["a", "b"], "max_tokens": 5, "temperature": 0.0, "top_p": 0.9, "top_k": 40,
        "stop": ["x", "y"], "seed": 7, "presence_penalty": 0.5, "frequency_penalty": -0.5, "min_tokens": 2,
        "ignore_eos": True, "echo": False, "user": "u",
    }


def test_generation_result_is_typed_with_request_id() -> None:
    result = make_client(Recorder()).generate("hi", model="m")
    assert isinstance(result, Generation)
    assert (result.text, result.finish_reason, result.request_id) == ("Hello", "stop", "req-1")
    assert result.usage is not None and result.usage.total_tokens == 2


def test_extras_are_merged() -> None:
    recorder = Recorder()
    make_client(recorder, default_headers={"X-Team": "nlp"}).generate(
        "hi", model="m", temperature=0.5,
        extra_headers={"X-Trace": "t1", "Authorization": "Bearer other"},
        extra_query={"debug": "1"},
        extra_body={"temperature": 0.1, "logit_bias": {"1": 2}},
    )
    request = recorder.last
    assert request.headers["x-trace"] == "t1"
    assert request.headers["x-team"] == "nlp"
    assert request.headers["authorization"] == "Bearer other"
    assert request.url.params["debug"] == "1"
    assert recorder.last_json == {"model": "m", "prompt": "hi", "temperature": 0.1, "logit_bias": {"1": 2}}


def test_chat_accepts_dicts_and_models() -> None:
    body = {"id": "c", "object": "chat.completion", "created": 1, "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "Paris"}, "finish_reason": "stop"}]}
    recorder = Recorder(body)
    reply = make_client(recorder).chat(
        [ChatMessage(role="system", content="Be brief."), {"role": "user", "content": "Capital of France?"}],
        model="m", max_completion_tokens=8,
    )
    assert reply.text == "Paris"
    assert str(recorder.last.url) == f"{BASE_URL}/chat/completions"
    assert recorder.last_json == {
        "model": "m", "max_completion_tokens": 8,
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Capital of France?"}],
    }


def test_nlp_endpoints() -> None:
    cases: list[tuple[Any, dict[str, Any], str, dict[str, Any], type]] = [
        (lambda c: c.embed(["a", "b"], model="e", dimensions=8),
         {"object": "list", "model": "e", "data": [{"index": 1, "embedding": [2.0]}, {"index": 0, "embedding": [1.0]}]},
         "/embeddings", {"model": "e", "input": ["a", "b"], "dimensions": 8}, Embeddings),
        (lambda c: c.classify("great!", model="s", labels=["pos", "neg"]),
         {"object": "list", "model": "s", "data": [{"index": 0, "label": "pos", "score": 0.9, "scores": {}}]},
         "/classifications", {"model": "s", "input": "great!", "labels": ["pos", "neg"]}, Classifications),
        (lambda c: c.classify([{"text": "q", "text_pair": "p"}, TextPair(text="q", text_pair="r")], model="x"),
         {"object": "list", "model": "x", "data": []},
         "/classifications", {"model": "x", "input": [{"text": "q", "text_pair": "p"}, {"text": "q", "text_pair": "r"}]},
         Classifications),
        (lambda c: c.rerank("q", ("a", "b"), model="e", top_n=1, return_documents=False),
         {"id": "rerank-1", "model": "e", "results": [{"index": 1, "relevance_score": 0.8}]},
         "/rerank", {"model": "e", "query": "q", "documents": ["a", "b"], "top_n": 1, "return_documents": False},
         Reranking),
        (lambda c: c.tokenize("hi", model="m"),
         {"model": "m", "tokens": [1, 2], "count": 2}, "/tokenize", {"model": "m", "text": "hi"}, Tokenized),
        (lambda c: c.detokenize((1, 2), model="m"),
         {"model": "m", "text": "hi"}, "/detokenize", {"model": "m", "tokens": [1, 2]}, Detokenized),
        (lambda c: c.evaluate(model="m", file="file-1"),
         {"model": "m", "file": "file-1", "metrics": {"accuracy": 1.0}, "num_examples": 3},
         "/evaluations", {"model": "m", "file": "file-1"}, Evaluation),
    ]
    for call, answer, path, sent, kind in cases:
        recorder = Recorder(answer)
        result = call(make_client(recorder))
        assert isinstance(result, kind)
        assert result.request_id == "req-1"
        assert recorder.last.method == "POST"
        assert recorder.last.url.path == "/v1" + path
        assert recorder.last_json == sent
    embeddings = make_client(Recorder(cases[0][1])).embed(["a", "b"], model="e")
    assert embeddings.vectors == [[1.0], [2.0]]


def test_models_resource() -> None:
    recorder = Recorder({"object": "list", "data": [{"id": "a"}, {"id": "b"}]})
    client = make_client(recorder)
    assert [m.id for m in client.models.list().data] == ["a", "b"]
    recorder.body = {"id": "org/model"}
    model = client.models.retrieve("org/model")
    assert isinstance(model, Model) and model.id == "org/model"
    assert recorder.last.url.raw_path == b"/v1/models/org%2Fmodel"


def test_file_upload_is_multipart(tmp_path: Path) -> None:
    answer = {"id": "file-1", "bytes": 3, "created_at": 1, "filename": "train.jsonl", "purpose": "fine-tune"}
    recorder = Recorder(answer)
    client = make_client(recorder)
    path = tmp_path / "train.jsonl"
    path.write_bytes(b'{"text": "x"}\n')
    uploaded = client.files.upload(path, extra_body={"note": "n"})
    assert isinstance(uploaded, FileObject)
    request = recorder.last
    assert request.url.path == "/v1/files"
    assert request.headers["content-type"].startswith("multipart/form-data; boundary=")
    assert b'name="file"; filename="train.jsonl"' in request.content
    assert b'{"text": "x"}\n' in request.content
    assert b'name="purpose"\r\n\r\nfine-tune' in request.content
    assert b'name="note"\r\n\r\nn' in request.content
    client.files.upload(b"raw", purpose="evaluation", filename="eval.jsonl")
    assert b'filename="eval.jsonl"' in recorder.last.content
    assert b'name="purpose"\r\n\r\nevaluation' in recorder.last.content
    with path.open("rb") as handle:
        client.files.upload(handle)
    assert b'filename="train.jsonl"' in recorder.last.content


def test_file_content_and_delete() -> None:
    recorder = Recorder(content=b"line1\nline2\n")
    client = make_client(recorder)
    assert client.files.content("file-1") == b"line1\nline2\n"
    assert recorder.last.url.path == "/v1/files/file-1/content"
    recorder.content = None
    recorder.body = {"id": "file-1", "deleted": True}
    deleted = client.files.delete("file-1")
    assert isinstance(deleted, FileDeleted) and deleted.deleted
    assert recorder.last.method == "DELETE"
    assert "idempotency-key" in recorder.last.headers


def test_with_options_shares_the_pool_and_changes_only_the_copy() -> None:
    recorder = Recorder()
    client = make_client(recorder)
    copy = client.with_options(api_key="sk-other", timeout=3, max_retries=7, default_headers={"X-A": "1"})
    assert copy._http is client._http
    assert (copy.api_key, copy.max_retries, copy.timeout) == ("sk-other", 7, httpx.Timeout(3))
    assert (client.api_key, client.max_retries) == (API_KEY, 2)
    copy.generate("hi", model="m")
    assert recorder.last.headers["authorization"] == "Bearer sk-other"
    assert recorder.last.headers["x-a"] == "1"
    client.generate("hi", model="m")
    assert recorder.last.headers["authorization"] == f"Bearer {API_KEY}"
    assert "x-a" not in recorder.last.headers


def test_closing_a_copy_keeps_the_shared_pool_open() -> None:
    client = MaaS()
    copy = client.with_options(timeout=1)
    copy.close()
    assert not client._http.is_closed
    client.close()
    assert client._http.is_closed


def test_with_options_copies_do_not_leak() -> None:
    client = make_client(Recorder())
    gc.collect()
    gc.disable()
    try:
        copy = client.with_options(max_retries=0)
        copy.models  # noqa: B018  (resources must not tie the copy into a cycle)
        copy.fine_tuning.jobs  # noqa: B018
        ref = weakref.ref(copy)
        del copy
        assert ref() is None  # freed by reference counting alone: no cycle, no cache
    finally:
        gc.enable()


def test_given_http_client_is_not_closed() -> None:
    http = httpx.Client()
    with MaaS(http_client=http) as client:
        assert client._http is http
    assert not http.is_closed
    with MaaS() as own:
        pool = own._http
    assert pool.is_closed
    http.close()


async def test_async_client_context_and_close() -> None:
    http = httpx.AsyncClient()
    async with AsyncMaaS(http_client=http):
        pass
    assert not http.is_closed
    async with AsyncMaaS() as own:
        pool = own._http
    assert pool.is_closed
    await http.aclose()


async def test_async_requests_match_sync_ones() -> None:
    sync_recorder, async_recorder = Recorder(), Recorder()
    make_client(sync_recorder).generate("hi", model="m", top_k=3, extra_query={"q": "1"})
    await make_async_client(async_recorder).generate("hi", model="m", top_k=3, extra_query={"q": "1"})
    assert sync_recorder.last.url == async_recorder.last.url
    assert sync_recorder.last.content == async_recorder.last.content


def test_logprobs_echo_n_and_sampling_controls_are_sent_as_given() -> None:
    recorder = Recorder()
    client = make_client(recorder)
    client.generate([[1, 2, 3], [4]], model="m", logprobs=2, echo=True, n=3, best_of=4, max_tokens=0,
                    logit_bias={"50256": -100}, stop_token_ids=(7, 8), min_p=0.1, repetition_penalty=1.2)
    assert recorder.last_json == {
        "model": "m", "prompt": [[1, 2, 3], [4]], "logprobs": 2, "echo": True, "n": 3, "best_of": 4,
        "max_tokens": 0, "logit_bias": {"50256": -100}, "stop_token_ids": [7, 8], "min_p": 0.1,
        "repetition_penalty": 1.2,
    }
    recorder.body = {"id": "c", "object": "chat.completion", "created": 1, "model": "m",
                     "choices": [{"index": 0, "message": {"role": "assistant", "content": "x"}}]}
    client.chat([{"role": "user", "content": "hi"}], model="m", logprobs=True, top_logprobs=5, n=2)
    assert recorder.last_json == {"model": "m", "messages": [{"role": "user", "content": "hi"}],
                                  "logprobs": True, "top_logprobs": 5, "n": 2}
    client.generate("hi", model="m", logprobs=None, n=None)
    assert recorder.last_json == {"model": "m", "prompt": "hi"}, "None leaves the server's default"
