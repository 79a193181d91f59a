"""`client.batches` of the SDK, sync and async, against the session server: `submit` writes the
input file from a list of request bodies, `wait` follows the batch (with a progress bar), and
`results` gives the answers back in the requests' order, failed ones included."""

from __future__ import annotations

import pytest

from maas_sdk import AsyncMaaS, BatchResult, MaaS, WaitTimeoutError
from tests.constants import EMBEDDER, GENERATOR


def chat(content: str, **extra: object) -> dict[str, object]:
    return {"model": GENERATOR, "messages": [{"role": "user", "content": content}], "max_tokens": 6,
            "temperature": 0, **extra}


def test_submit_wait_and_results_in_request_order(client: MaaS, capsys: pytest.CaptureFixture[str]) -> None:
    questions = ["Say one.", "Say two.", "Say three."]
    requests = [chat(q) for q in questions]
    requests.insert(1, chat("bad", max_tokens=0))
    batch = client.batches.submit(requests, endpoint="/v1/chat/completions", metadata={"from": "sdk"})
    assert batch.status == "validating" and batch.metadata == {"from": "sdk"}
    done = batch.wait(poll_interval=0.3, timeout=240, progress=True)
    assert done.status == "completed" and done.request_counts.total == 4
    assert "request" in capsys.readouterr().err, "the progress bar counts requests"
    results = done.results()
    assert [r.custom_id for r in results] == ["request-0", "request-1", "request-2", "request-3"]
    assert [r.ok for r in results] == [True, False, True, True]
    assert all(isinstance(r, BatchResult) for r in results)
    failed = results[1].response
    assert failed is not None and failed.status_code == 400 and failed.body["error"]["param"] == "max_tokens"
    for result, question in zip([results[0], *results[2:]], questions):
        online = client.chat([{"role": "user", "content": question}], model=GENERATOR, max_tokens=6, temperature=0)
        assert result.response is not None and result.response.body["choices"][0]["message"]["content"] == online.text
    assert done.id in [b.id for b in client.batches.list(limit=5)]


@pytest.mark.slow
def test_wait_times_out_with_the_last_state(client: MaaS) -> None:
    batch = client.batches.submit([chat(f"Tell a long story {i}.", max_tokens=64) for i in range(8)],
                                  endpoint="/v1/chat/completions")
    with pytest.raises(WaitTimeoutError) as caught:
        client.batches.wait(batch.id, poll_interval=0.1, timeout=0.2)
    assert caught.value.job.id == batch.id and "batch" in str(caught.value)
    cancelled = client.batches.cancel(batch.id)
    assert cancelled.status in ("cancelling", "cancelled")
    assert cancelled.wait(poll_interval=0.2, timeout=60).status == "cancelled"


@pytest.mark.slow
async def test_async_client_submits_lines_with_their_own_ids(async_client: AsyncMaaS) -> None:
    lines = [{"custom_id": name, "body": {"model": EMBEDDER, "input": name}} for name in ("b-second", "a-first")]
    batch = await async_client.batches.submit(lines, endpoint="/v1/embeddings")
    done = await batch.wait(poll_interval=0.2, timeout=120)
    assert done.status == "completed"
    results = await done.results()
    assert [r.custom_id for r in results] == ["b-second", "a-first"], "the input's order, not sorted ids"
    online = await async_client.embed("a-first", model=EMBEDDER)
    assert results[1].response is not None
    assert results[1].response.body["data"][0]["embedding"] == pytest.approx(online.data[0].embedding, abs=1e-5)
    page = await async_client.batches.list(limit=1)
    assert page.data[0].id == batch.id
