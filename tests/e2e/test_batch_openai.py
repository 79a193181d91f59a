"""The Batch API through the official openai client, as its users run it: upload a file of
requests with purpose `batch`, create the batch, wait for it, download and parse its output and
error files. Each answer is exactly what the same request gets online (greedy decoding). Upload
checks (a 400 naming the line), cancellation, and the list route, on the session server."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from reference_server.testing import ServerProcess
from tests.constants import API_KEY, EMBEDDER, GENERATOR

# Batches run to their end (about 13 s): make test runs it, make test-fast does not.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def oai(server: ServerProcess) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(api_key=API_KEY, base_url=server.base_url, max_retries=0, timeout=120) as c:
        yield c


def jsonl(lines: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(line) + "\n" for line in lines).encode()


def chat_line(custom_id: str, content: str, **extra: Any) -> dict[str, Any]:
    body = {"model": GENERATOR, "messages": [{"role": "user", "content": content}], "max_tokens": 8,
            "temperature": 0, **extra}
    return {"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions", "body": body}


def wait(oai: openai.OpenAI, batch_id: str, timeout: float = 240) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        batch = oai.batches.retrieve(batch_id)
        if batch.status in ("completed", "failed", "expired", "cancelled") or time.monotonic() > deadline:
            return batch
        time.sleep(0.3)


def parsed(oai: openai.OpenAI, file_id: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in oai.files.content(file_id).text.splitlines()]


def test_chat_batch_end_to_end(oai: openai.OpenAI) -> None:
    questions = [f"Name a colour, number {i}." for i in range(6)]
    lines = [chat_line(f"q-{i}", q) for i, q in enumerate(questions)]
    lines.insert(3, chat_line("bad-body", "hi", max_tokens=-1))  # a bad body fails that line only
    upload = oai.files.create(file=("requests.jsonl", jsonl(lines)), purpose="batch")
    assert (upload.purpose, upload.status) == ("batch", "processed")
    batch = oai.batches.create(input_file_id=upload.id, endpoint="/v1/chat/completions", completion_window="24h",
                               metadata={"job": "colours"})
    assert batch.status == "validating" and batch.id.startswith("batch_")
    assert batch.metadata == {"job": "colours"} and batch.expires_at is not None

    done = wait(oai, batch.id)
    assert done.status == "completed", done
    assert done.request_counts is not None
    assert (done.request_counts.total, done.request_counts.completed, done.request_counts.failed) == (7, 6, 1)
    for stamp in (done.in_progress_at, done.finalizing_at, done.completed_at):
        assert stamp is not None and done.created_at <= stamp
    assert done.output_file_id and done.error_file_id
    assert oai.files.retrieve(done.output_file_id).purpose == "batch_output"

    output = parsed(oai, done.output_file_id)
    assert [line["custom_id"] for line in output] == [f"q-{i}" for i in range(6)], "input order"
    for line, question in zip(output, questions):
        assert line["id"].startswith("batch_req_") and line["error"] is None
        response = line["response"]
        assert response["status_code"] == 200 and response["request_id"]
        online = json.loads(oai.chat.completions.with_raw_response.create(
            model=GENERATOR, messages=[{"role": "user", "content": question}], max_tokens=8, temperature=0).text)
        body = response["body"]
        assert body["choices"] == online["choices"] and body["usage"] == online["usage"]
        assert set(body) == set(online) and body["model"] == online["model"]
    assert done.usage is not None
    assert done.usage.input_tokens == sum(line["response"]["body"]["usage"]["prompt_tokens"] for line in output)
    assert done.usage.output_tokens == sum(line["response"]["body"]["usage"]["completion_tokens"] for line in output)
    assert done.usage.total_tokens == done.usage.input_tokens + done.usage.output_tokens

    [error] = parsed(oai, done.error_file_id)
    assert error["custom_id"] == "bad-body" and error["error"] is None
    assert error["response"]["status_code"] == 400
    assert error["response"]["body"]["error"]["param"] == "max_tokens"


@pytest.mark.slow
def test_embeddings_and_completions_batches(oai: openai.OpenAI) -> None:
    texts = ["a red apple", "a green pear"]
    lines = [{"custom_id": t, "method": "POST", "url": "/v1/embeddings", "body": {"model": EMBEDDER, "input": t}}
             for t in texts]
    upload = oai.files.create(file=("embed.jsonl", jsonl(lines)), purpose="batch")
    done = wait(oai, oai.batches.create(input_file_id=upload.id, endpoint="/v1/embeddings",
                                        completion_window="24h").id)
    assert done.status == "completed" and done.output_file_id
    for line, text in zip(parsed(oai, done.output_file_id), texts):
        online = oai.embeddings.create(model=EMBEDDER, input=text, encoding_format="float")
        assert line["response"]["body"]["data"][0]["embedding"] == pytest.approx(online.data[0].embedding, abs=1e-5)

    prompt = {"custom_id": "c", "method": "POST", "url": "/v1/completions",
              "body": {"model": GENERATOR, "prompt": "Once upon a time", "max_tokens": 6, "temperature": 0}}
    upload = oai.files.create(file=("complete.jsonl", jsonl([prompt])), purpose="batch")
    done = wait(oai, oai.batches.create(input_file_id=upload.id, endpoint="/v1/completions",
                                        completion_window="24h").id)
    assert done.status == "completed" and done.output_file_id
    [line] = parsed(oai, done.output_file_id)
    online = oai.completions.create(model=GENERATOR, prompt="Once upon a time", max_tokens=6, temperature=0)
    assert line["response"]["body"]["choices"][0]["text"] == online.choices[0].text


@pytest.mark.slow
def test_responses_batch(oai: openai.OpenAI) -> None:
    body = {"model": GENERATOR, "input": "Name a planet.", "max_output_tokens": 8, "temperature": 0, "store": False}
    line = {"custom_id": "r", "method": "POST", "url": "/v1/responses", "body": body}
    upload = oai.files.create(file=("responses.jsonl", jsonl([line])), purpose="batch")
    done = wait(oai, oai.batches.create(input_file_id=upload.id, endpoint="/v1/responses",
                                        completion_window="24h").id)
    assert done.status == "completed" and done.output_file_id, done
    [result] = parsed(oai, done.output_file_id)
    online = oai.responses.create(model=GENERATOR, input="Name a planet.", max_output_tokens=8, temperature=0,
                                  store=False)
    answer = result["response"]["body"]
    assert answer["object"] == "response" and answer["output"][0]["content"][0]["text"] == online.output_text
    assert done.usage is not None and done.usage.output_tokens == answer["usage"]["output_tokens"]


@pytest.mark.parametrize(("lines", "line", "words"), [
    ([b'{"custom_id": "a", "method": "POST", "url": "/v1/chat/completions", "body": {}}', b"{not json"], 2,
     "not valid JSON"),
    ([b'{"custom_id": "a", "method": "POST", "url": "/v1/chat/completions", "body": {}}'] * 2, 2,
     "already used on line 1"),
    ([b'{"custom_id": "a", "method": "POST", "url": "/v1/images/generations", "body": {}}'], 1, '"url" must be'),
    ([b'{"custom_id": "a", "method": "GET", "url": "/v1/chat/completions", "body": {}}'], 1, '"method"'),
    ([b'{"custom_id": "a", "method": "POST", "url": "/v1/chat/completions", "body": []}'], 1, '"body"'),
    ([b'{"method": "POST", "url": "/v1/chat/completions", "body": {}}'], 1, '"custom_id"'),
    ([b'{"custom_id": "a", "method": "POST", "url": "/v1/embeddings", "body": {}}',
      b'{"custom_id": "b", "method": "POST", "url": "/v1/completions", "body": {}}'], 2, "one endpoint"),
])
def test_bad_upload_lines_are_a_400_naming_the_line(oai: openai.OpenAI, lines: list[bytes], line: int,
                                                     words: str) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        oai.files.create(file=("bad.jsonl", b"\n".join(lines) + b"\n"), purpose="batch")
    error = caught.value.body
    assert isinstance(error, dict) and error["param"] == "file"
    assert f"line {line}:" in error["message"] and words in error["message"]


def test_bad_batch_requests_are_400s_naming_the_parameter(oai: openai.OpenAI) -> None:
    upload = oai.files.create(file=("one.jsonl", jsonl([chat_line("x", "hi")])), purpose="batch")
    tuning = oai.files.create(file=("train.jsonl", jsonl([{"prompt": "a", "completion": "b"}])), purpose="fine-tune")
    for kwargs, param in (
        ({"input_file_id": upload.id, "endpoint": "/v1/embeddings"}, "endpoint"),
        ({"input_file_id": upload.id, "endpoint": "/v1/moderations"}, "endpoint"),
        ({"input_file_id": tuning.id, "endpoint": "/v1/chat/completions"}, "input_file_id"),
        ({"input_file_id": "file-0123456789abcdef01234567", "endpoint": "/v1/chat/completions"}, "input_file_id"),
    ):
        with pytest.raises(openai.BadRequestError) as caught:
            oai.batches.create(completion_window="24h", **kwargs)  # type: ignore[arg-type]
        assert isinstance(caught.value.body, dict) and caught.value.body["param"] == param
    with pytest.raises(openai.BadRequestError) as caught:
        oai.batches.create(input_file_id=upload.id, endpoint="/v1/chat/completions",
                           completion_window="48h")  # type: ignore[arg-type]
    assert isinstance(caught.value.body, dict) and caught.value.body["param"] == "completion_window"
    with pytest.raises(openai.NotFoundError):
        oai.batches.retrieve("batch_0123456789abcdef01234567")


@pytest.mark.slow
def test_cancel_lets_the_lines_in_flight_finish_into_the_output(oai: openai.OpenAI) -> None:
    """Cancelled as soon as its lines start, before any can finish: it stays `cancelling` while the
    lines in flight run to their end, then ends `cancelled` with each of them answered in full in
    its output, and no line started after the cancellation."""
    lines = [chat_line(f"long-{i}", f"Tell a long story about the number {i}.", max_tokens=32, ignore_eos=True)
             for i in range(80)]
    upload = oai.files.create(file=("long.jsonl", jsonl(lines)), purpose="batch")
    batch = oai.batches.create(input_file_id=upload.id, endpoint="/v1/chat/completions", completion_window="24h")
    deadline = time.monotonic() + 60
    while oai.batches.retrieve(batch.id).status == "validating" and time.monotonic() < deadline:
        time.sleep(0.05)
    cancelling = oai.batches.cancel(batch.id)
    assert cancelling.status == "cancelling" and cancelling.cancelling_at is not None
    assert cancelling.request_counts is not None and cancelling.request_counts.completed == 0
    done = wait(oai, batch.id, timeout=120)
    assert done.status == "cancelled" and done.cancelled_at is not None
    assert done.request_counts is not None and done.error_file_id is None
    assert 0 < done.request_counts.completed < 80, "the lines in flight finished; no more started"
    ran = parsed(oai, done.output_file_id) if done.output_file_id else []
    assert len(ran) == done.request_counts.completed
    assert all(line["response"]["body"]["usage"]["completion_tokens"] == 32 for line in ran), "answered in full"
    with pytest.raises(openai.BadRequestError):
        finished = oai.files.create(file=("one.jsonl", jsonl([chat_line("x", "hi")])), purpose="batch")
        completed = wait(oai, oai.batches.create(input_file_id=finished.id, endpoint="/v1/chat/completions",
                                                 completion_window="24h").id)
        assert completed.status == "completed"
        oai.batches.cancel(completed.id)


@pytest.mark.slow
def test_list_is_newest_first_and_paged(oai: openai.OpenAI) -> None:
    upload = oai.files.create(file=("one.jsonl", jsonl([chat_line("x", "hi")])), purpose="batch")
    created = [oai.batches.create(input_file_id=upload.id, endpoint="/v1/chat/completions",
                                  completion_window="24h").id for _ in range(3)]
    page = oai.batches.list(limit=2)
    assert [b.id for b in page.data] == created[::-1][:2] and page.has_more
    assert [b.id for b in oai.batches.list(limit=1, after=created[1]).data] == [created[0]]
    for batch_id in created:
        assert wait(oai, batch_id).status == "completed"


@pytest.mark.slow
def test_a_batch_whose_input_file_is_deleted_fails(oai: openai.OpenAI) -> None:
    lines = [chat_line(f"d-{i}", f"Describe the number {i}.", max_tokens=32) for i in range(40)]
    upload = oai.files.create(file=("deleted.jsonl", jsonl(lines)), purpose="batch")
    batch = oai.batches.create(input_file_id=upload.id, endpoint="/v1/chat/completions", completion_window="24h")
    assert oai.files.delete(upload.id).deleted
    done = wait(oai, batch.id, timeout=60)
    assert done.status == "failed" and done.failed_at is not None
    assert done.errors is not None and done.errors.data
    assert (done.errors.data[0].code, done.errors.data[0].param) == ("file_not_found", "input_file_id")
