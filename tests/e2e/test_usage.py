"""Usage per API key over real HTTP: every generation, embedding and classification request is
counted for its key (streamed with or without `include_usage` too), read back through the SDK,
through OpenAI's Usage API routes in OpenAI's shape, and refused parameters are 400s naming them;
a key past its monthly budget gets 429 `quota_exceeded`, which neither this SDK nor OpenAI's
client retries. Then, on a two-key server of its own: fine-tuning's trained tokens are counted,
another key sees none of it (not even the fine-tuned model's id), and the counts survive a crash."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import openai
import pytest

from maas_sdk import AsyncMaaS, MaaS, QuotaExceededError, UsageResult
from reference_server.testing import ServerProcess
from tests.constants import BUDGET_KEY, BUDGET_TOKENS, EMBEDDER, GENERATOR, USAGE_KEY

DATA = Path(__file__).resolve().parents[1] / "data"
HOUR = 3600
COMPLETIONS_RESULT = {"object", "input_tokens", "output_tokens", "input_cached_tokens", "input_audio_tokens",
                      "output_audio_tokens", "num_model_requests", "project_id", "user_id", "api_key_id", "model",
                      "batch"}
EMBEDDINGS_RESULT = {"object", "input_tokens", "num_model_requests", "project_id", "user_id", "api_key_id", "model"}


def get(base_url: str, key: str, path: str, **params: Any) -> httpx.Response:
    return httpx.get(base_url + path, params=params, headers={"authorization": f"Bearer {key}"}, timeout=60)


def totals(client: MaaS, since: int) -> dict[tuple[str | None, str | None], UsageResult]:
    """The key's use since `since`, per (model, kind), added over the page's buckets."""
    page = client.usage(start_time=since, bucket_width="1h", group_by=["model", "kind"])
    assert not page.has_more
    found: dict[tuple[str | None, str | None], UsageResult] = {}
    for bucket in page.data:
        for r in bucket.results:
            seen = found.setdefault((r.model, r.kind), UsageResult(model=r.model, kind=r.kind))
            for field in ("requests", "prompt_tokens", "completion_tokens", "inputs", "trained_tokens",
                          "total_tokens"):
                setattr(seen, field, getattr(seen, field) + getattr(r, field))
    return found


def delta(after: UsageResult | None, before: UsageResult | None) -> tuple[int, int, int, int]:
    def of(r: UsageResult | None) -> tuple[int, int, int, int]:
        return (r.requests, r.prompt_tokens, r.completion_tokens, r.inputs) if r else (0, 0, 0, 0)

    a, b = of(after), of(before)
    return (a[0] - b[0], a[1] - b[1], a[2] - b[2], a[3] - b[3])


def test_every_request_is_counted_for_its_key(server: ServerProcess) -> None:
    since = int(time.time()) - HOUR
    messages = [{"role": "user", "content": "Name a colour."}]
    with MaaS(api_key=USAGE_KEY, base_url=server.base_url, timeout=120) as client:
        before = totals(client, since)
        chat = client.chat(messages, model=GENERATOR, max_tokens=4, temperature=0)
        two = client.generate("The sky is", model=GENERATOR, max_tokens=3, n=2, seed=1)
        # Streamed without usage: the server counts it all the same (5 tokens, ignore_eos).
        assert [c for c in client.chat(messages, model=GENERATOR, max_tokens=5, ignore_eos=True, stream=True)]
        [*_, last] = client.chat(messages, model=GENERATOR, max_tokens=6, stream=True, include_usage=True)
        [*_, tail] = client.generate("Once", model=GENERATOR, max_tokens=2, stream=True, include_usage=True)
        vectors = client.embed(["red", "green", "blue"], model=EMBEDDER)
        labelled = client.classify("I love it", model=EMBEDDER, labels=["positive", "negative"])
        after = totals(client, since)

    assert last.usage is not None and tail.usage is not None
    replies = (chat.usage, two.usage, last.usage, tail.usage)
    prompts = sum(u.prompt_tokens for u in replies) + chat.usage.prompt_tokens  # the plain stream's prompt
    completions = sum(u.completion_tokens for u in replies) + 5
    assert delta(after.get((GENERATOR, "completions")), before.get((GENERATOR, "completions"))) == (
        5, prompts, completions, 0)
    assert delta(after.get((EMBEDDER, "embeddings")), before.get((EMBEDDER, "embeddings"))) == (
        1, vectors.usage.prompt_tokens, 0, 3)
    assert delta(after.get((EMBEDDER, "classifications")), before.get((EMBEDDER, "classifications"))) == (
        1, labelled.usage.prompt_tokens, 0, 1)
    total = after[(GENERATOR, "completions")]
    assert total.total_tokens == total.prompt_tokens + total.completion_tokens


async def test_the_async_client_reads_the_same_usage(server: ServerProcess) -> None:
    since = int(time.time()) - HOUR
    async with AsyncMaaS(api_key=USAGE_KEY, base_url=server.base_url, timeout=120) as client:
        await client.embed("one more", model=EMBEDDER)
        page = await client.usage(start_time=since, group_by=["kind"], kinds=["embeddings"])
    with MaaS(api_key=USAGE_KEY, base_url=server.base_url, timeout=120) as sync:
        assert sync.usage(start_time=since, group_by=["kind"], kinds=["embeddings"]) == page
    [result] = [r for bucket in page.data for r in bucket.results]
    assert (result.kind, result.model) == ("embeddings", None) and result.requests >= 1


def test_openai_usage_routes_answer_in_openai_shape(server: ServerProcess) -> None:
    with MaaS(api_key=USAGE_KEY, base_url=server.base_url, timeout=120) as client:
        client.chat([{"role": "user", "content": "Hi"}], model=GENERATOR, max_tokens=2)
        client.embed("hello", model=EMBEDDER)
        ours = totals(client, int(time.time()) - HOUR)
    now = int(time.time())
    page = get(server.base_url, USAGE_KEY, "/organization/usage/completions", start_time=now - HOUR,
               end_time=now + 1, bucket_width="1h", group_by=["model", "api_key_id"]).json()
    assert set(page) == {"object", "data", "has_more", "next_page"} and page["object"] == "page"
    assert page["has_more"] is False and page["next_page"] is None
    buckets = page["data"]
    assert all(set(b) == {"object", "start_time", "end_time", "results"} for b in buckets)
    assert {b["object"] for b in buckets} == {"bucket"} and buckets[0]["start_time"] == (now - HOUR) // HOUR * HOUR
    assert [b["start_time"] for b in buckets] == list(range(buckets[0]["start_time"], now + 1, HOUR))
    assert all(b["end_time"] == b["start_time"] + HOUR for b in buckets)
    results = [r for b in buckets for r in b["results"]]
    assert all(set(r) == COMPLETIONS_RESULT for r in results)
    assert {r["object"] for r in results} == {"organization.usage.completions.result"}
    assert {r["model"] for r in results} == {GENERATOR}
    assert len({r["api_key_id"] for r in results}) == 1 and results[0]["api_key_id"].startswith("key_")
    assert sum(r["num_model_requests"] for r in results) == ours[(GENERATOR, "completions")].requests
    assert sum(r["input_tokens"] for r in results) == ours[(GENERATOR, "completions")].prompt_tokens
    assert sum(r["output_tokens"] for r in results) == ours[(GENERATOR, "completions")].completion_tokens

    embeddings = get(server.base_url, USAGE_KEY, "/organization/usage/embeddings", start_time=now - 60,
                     bucket_width="1d").json()
    [day] = embeddings["data"]
    [result] = day["results"]  # not grouped: one result for the whole bucket
    assert set(result) == EMBEDDINGS_RESULT and result["object"] == "organization.usage.embeddings.result"
    assert result["model"] is None and result["input_tokens"] >= 1 and result["num_model_requests"] >= 1
    elsewhere = get(server.base_url, USAGE_KEY, "/organization/usage/embeddings", start_time=now - 60,
                    api_key_ids="key_someone-else").json()
    assert [b["results"] for b in elsewhere["data"]] == [[]]


def test_pages_of_buckets_follow_next_page(server: ServerProcess) -> None:
    now = int(time.time())
    seen: list[int] = []
    params: dict[str, Any] = {"start_time": now - 5 * HOUR, "end_time": now, "bucket_width": "1h", "limit": 2}
    for _ in range(5):
        page = get(server.base_url, USAGE_KEY, "/usage", **params).json()
        seen += [b["start_time"] for b in page["data"]]
        if not page["has_more"]:
            break
        params["page"] = page["next_page"]
    first = (now - 5 * HOUR) // HOUR * HOUR
    assert seen == list(range(first, now, HOUR)), "consecutive buckets, none twice, none missing"
    minutes = get(server.base_url, USAGE_KEY, "/usage", start_time=now - 600, end_time=now, bucket_width="1m").json()
    assert [b["start_time"] for b in minutes["data"]] == list(range((now - 600) // 60 * 60, now, 60))


@pytest.mark.parametrize("path", ["/usage", "/organization/usage/completions", "/organization/usage/embeddings"])
@pytest.mark.parametrize(("params", "param"), [
    ({}, "start_time"),
    ({"start_time": "yesterday"}, "start_time"),
    ({"start_time": -5}, "start_time"),
    ({"start_time": 10**20}, "start_time"),
    ({"start_time": 1000, "end_time": 10**19}, "end_time"),
    ({"start_time": 1000, "end_time": 1000}, "end_time"),
    ({"start_time": 1000, "bucket_width": "1w"}, "bucket_width"),
    ({"start_time": 1000, "group_by": "project_id"}, "group_by"),
    ({"start_time": 1000, "limit": 0}, "limit"),
    ({"start_time": 1000, "limit": 32}, "limit"),
    ({"start_time": 1000, "page": "AAAA"}, "page"),
    ({"start_time": 1000, "project_ids": "proj_1"}, "project_ids"),
])
def test_bad_parameters_are_400s_naming_them(server: ServerProcess, path: str, params: dict[str, Any],
                                             param: str) -> None:
    answer = get(server.base_url, USAGE_KEY, path, **params)
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["param"] == param


def use_up_the_budget(client: MaaS) -> None:
    """Spend the budget key's tokens if no test has yet: a request starts while the budget lasts, and
    the one that crosses it completes."""
    try:
        reply = client.chat([{"role": "user", "content": "Tell me a story."}], model=GENERATOR, max_tokens=30)
        assert reply.usage.total_tokens >= BUDGET_TOKENS
    except QuotaExceededError:
        pass


def test_a_key_past_its_monthly_budget_gets_429_and_no_client_retries(server: ServerProcess) -> None:
    sent: list[str] = []
    hooks = {"request": [lambda request: sent.append(request.url.path)]}
    with MaaS(api_key=BUDGET_KEY, base_url=server.base_url, max_retries=3,
              http_client=httpx.Client(timeout=120, event_hooks=hooks)) as client:
        use_up_the_budget(client)
        sent.clear()
        with pytest.raises(QuotaExceededError) as refused:
            client.chat([{"role": "user", "content": "And another."}], model=GENERATOR, max_tokens=5)
        assert len(sent) == 1, "not retried"
        error = refused.value
        assert (error.status_code, error.code) == (429, "quota_exceeded")
        assert error.response.headers["x-should-retry"] == "false"
        assert error.retry_after is not None and error.retry_after > 0
        assert "renews at" in error.message
        with pytest.raises(QuotaExceededError):
            client.embed("x", model=EMBEDDER)
        with pytest.raises(QuotaExceededError):
            client.fine_tuning.jobs.create(model=EMBEDDER, training_file="file-0123456789abcdef01234567")
        # Reading what was used stays open.
        used = client.usage(start_time=int(time.time()) - HOUR)
        assert sum(r.total_tokens for b in used.data for r in b.results) >= BUDGET_TOKENS

    sent.clear()
    with openai.OpenAI(api_key=BUDGET_KEY, base_url=server.base_url, max_retries=3,
                       http_client=httpx.Client(timeout=120, event_hooks=hooks)) as official, \
            pytest.raises(openai.RateLimitError) as theirs:
        official.chat.completions.create(model=GENERATOR, messages=[{"role": "user", "content": "Hi"}], max_tokens=2)
    assert len(sent) == 1 and theirs.value.code == "quota_exceeded"


async def test_the_async_client_does_not_retry_a_used_up_budget(server: ServerProcess) -> None:
    sent: list[str] = []

    async def count(request: httpx.Request) -> None:
        sent.append(request.url.path)

    async with AsyncMaaS(api_key=BUDGET_KEY, base_url=server.base_url, max_retries=3,
                         http_client=httpx.AsyncClient(timeout=120, event_hooks={"request": [count]})) as client:
        for attempt in range(2):  # the first may find the budget unused, and uses it up
            before = len(sent)
            try:
                await client.chat([{"role": "user", "content": "Hi"}], model=GENERATOR, max_tokens=40,
                                  ignore_eos=True)
            except QuotaExceededError:
                assert len(sent) == before + 1, "not retried"
                break
            assert attempt == 0
        else:
            pytest.fail("a budget of 40 tokens was never refused")


# A server of its own: two keys, one fine-tunes a classifier; the counts must outlive a crash.

OWNER, OTHER = "sk-usage-owner-7d21", "sk-usage-other-0b9e"


@pytest.fixture(scope="module")
def tenants(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimpleNamespace]:
    workdir = tmp_path_factory.mktemp("usage-tenants")
    env = {"MAAS_API_KEYS": f"{OWNER},{OTHER}", "MAAS_ENABLED_MODELS": EMBEDDER,
           "MAAS_DATA_DIR": str(workdir / "data"), "MAAS_THREADS": "1"}
    rows = (DATA / "sentiment_train.jsonl").read_text().splitlines()[:16]
    (workdir / "train.jsonl").write_text("\n".join(rows) + "\n")
    proc = ServerProcess(env=env, log_path=workdir / "server.log").start()
    running = SimpleNamespace(server=proc, env=env, workdir=workdir)
    try:
        with MaaS(api_key=OWNER, base_url=proc.base_url, timeout=120) as owner:
            train = owner.files.upload(workdir / "train.jsonl")
            job = owner.fine_tuning.jobs.create(model=EMBEDDER, training_file=train.id, suffix="usage", seed=1,
                                                hyperparameters={"n_epochs": 1}).wait(poll_interval=0.5, timeout=600)
            assert job.status == "succeeded" and job.trained_tokens, job
            owner.classify(["Great!", "Awful."], model=job.fine_tuned_model)
        with MaaS(api_key=OTHER, base_url=proc.base_url, timeout=120) as other:
            other.embed(["a", "b"], model=EMBEDDER)
        running.job = job
        yield running
    finally:
        running.server.stop()  # the one started after the crash, if the crash test ran


@pytest.mark.slow
def test_fine_tuning_is_counted_and_no_key_sees_another(tenants: SimpleNamespace) -> None:
    base, job = tenants.server.base_url, tenants.job
    since = int(time.time()) - HOUR
    with MaaS(api_key=OWNER, base_url=base) as owner:
        mine = totals(owner, since)
    assert mine[(EMBEDDER, "fine_tuning")].trained_tokens == job.trained_tokens
    assert mine[(EMBEDDER, "fine_tuning")].total_tokens == job.trained_tokens
    assert mine[(job.fine_tuned_model, "classifications")].inputs == 2
    with MaaS(api_key=OTHER, base_url=base) as other:
        theirs = totals(other, since)
    assert set(theirs) == {(EMBEDDER, "embeddings")} and theirs[(EMBEDDER, "embeddings")].inputs == 2
    for path in ("/usage", "/organization/usage/completions", "/organization/usage/embeddings"):
        answer = get(base, OTHER, path, start_time=since, group_by="model")
        assert answer.status_code == 200 and job.fine_tuned_model not in answer.text, path
        # Asked for by name, another key's model is a 404 word for word like an unknown one.
        theirs_by_name = get(base, OTHER, path, start_time=since, models=job.fine_tuned_model)
        unknown = get(base, OTHER, path, start_time=since, models=job.fine_tuned_model + "x")
        assert theirs_by_name.status_code == unknown.status_code == 404
        error = theirs_by_name.json()["error"]
        assert (error["param"], error["code"]) == ("models", "model_not_found")
        assert unknown.json()["error"] == {**error, "message": error["message"].replace(
            job.fine_tuned_model, job.fine_tuned_model + "x")}
        assert get(base, OWNER, path, start_time=since, models=job.fine_tuned_model).status_code == 200


@pytest.mark.slow
def test_counts_survive_a_crash(tenants: SimpleNamespace) -> None:
    since = int(time.time()) - HOUR
    with MaaS(api_key=OTHER, base_url=tenants.server.base_url) as other:
        before = totals(other, since)[(EMBEDDER, "embeddings")]
        vectors = other.embed(["counted", "before the crash"], model=EMBEDDER)
    time.sleep(1.5)  # more than MAAS_USAGE_FLUSH_SECONDS: written in the background by now
    tenants.server.kill()  # SIGKILL: nothing is written on the way out
    tenants.server = ServerProcess(env=tenants.env, log_path=tenants.workdir / "after-crash.log").start()
    with MaaS(api_key=OTHER, base_url=tenants.server.base_url) as other:
        after = totals(other, since)[(EMBEDDER, "embeddings")]
    assert delta(after, before) == (1, vectors.usage.prompt_tokens, 0, 2)
