"""The Batch API's files, written and read the same way by both clients.

`requests_jsonl` turns a list of request bodies (or `BatchRequest`s, or dicts that already have
a `custom_id`) into the JSONL a batch reads, numbering the bodies `request-0`, `request-1`, ...;
`ordered_results` parses a batch's output and error files and gives the results back in the
order of the requests' `custom_id`s, so result `i` answers request `i`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from maas_sdk.protocol import BatchRequest, BatchResult

__all__ = ["custom_ids", "ordered_results", "requests_jsonl"]

RequestItem = BatchRequest | Mapping[str, Any]


def _line(index: int, item: RequestItem, url: str) -> dict[str, Any]:
    if isinstance(item, BatchRequest):
        return item.model_dump(mode="json")
    if "custom_id" in item and "body" in item:
        return {"method": "POST", "url": url, **item}
    return {"custom_id": f"request-{index}", "method": "POST", "url": url, "body": dict(item)}


def requests_jsonl(requests: Sequence[RequestItem], url: str) -> bytes:
    """The batch input file for `requests` (bodies for `url`, or whole lines)."""
    if not requests:
        raise ValueError("a batch needs at least one request")
    return "".join(json.dumps(_line(i, item, url), ensure_ascii=False) + "\n"
                   for i, item in enumerate(requests)).encode("utf-8")


def custom_ids(jsonl: bytes) -> list[str]:
    """The `custom_id` of every line of a batch input file, in order."""
    return [str(json.loads(line)["custom_id"]) for line in jsonl.splitlines() if line.strip()]


def ordered_results(order: Sequence[str], files: Iterable[bytes]) -> list[BatchResult]:
    """The results in `files` (output and error files) in the order of the `custom_id`s `order`.
    A request with no result (the batch was cancelled before it ran) is left out."""
    found: dict[str, BatchResult] = {}
    for data in files:
        for line in data.splitlines():
            if line.strip():
                result = BatchResult.model_validate_json(line)
                found[result.custom_id] = result
    return [found[custom_id] for custom_id in order if custom_id in found]
