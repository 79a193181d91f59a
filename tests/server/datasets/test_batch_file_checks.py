"""Batch input files as they are checked on upload: one request per line, one url per file,
unique `custom_id`s, at most `MAAS_BATCH_MAX_REQUESTS` lines; each problem names its line."""

from __future__ import annotations

import io
import json

import pytest

from reference_server.datasets import DatasetError, validate_batch_file
from reference_server.datasets.formats import BatchFileInfo

URLS = ("/v1/chat/completions", "/v1/embeddings")


def line(custom_id: str, url: str = "/v1/embeddings", **extra: object) -> bytes:
    return json.dumps({"custom_id": custom_id, "method": "POST", "url": url,
                       "body": {"model": "m", "input": "x"}, **extra}).encode()


def check(*lines: bytes, max_requests: int = 10) -> BatchFileInfo:
    return validate_batch_file(io.BytesIO(b"\n".join(lines) + b"\n"), URLS, max_requests)


def test_a_good_file_counts_its_requests_and_names_its_url() -> None:
    assert check(line("a"), b"", line("b")) == BatchFileInfo(lines=2, url="/v1/embeddings")


@pytest.mark.parametrize(("lines", "number", "words"), [
    ([line("a"), line("b"), line("c")], 3, "at most 2 requests"),
    ([line("a"), line("a")], 2, "already used on line 1"),
    ([line("a"), line("b", url="/v1/chat/completions")], 2, "one endpoint"),
    ([line("a", url="/v1/moderations")], 1, '"url" must be one of'),
    ([line("a", model="m")], 1, "unknown key 'model'"),
    ([line("")], 1, '"custom_id" must be a non-empty string'),
    ([b"[1, 2]"], 1, "expected a JSON object"),
])
def test_each_problem_names_its_line(lines: list[bytes], number: int, words: str) -> None:
    with pytest.raises(DatasetError) as caught:
        check(*lines, max_requests=2)
    assert caught.value.line == number and caught.value.param == "file"
    assert words in caught.value.message


def test_an_empty_file_is_refused() -> None:
    with pytest.raises(DatasetError, match="no requests"):
        check(b"", b"  ")
