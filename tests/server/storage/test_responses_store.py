"""Stored responses of the Responses API on both store backends: seen only by their owner,
gone when deleted or expired, and their JSON read back in the order it was written."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from reference_server.storage import ResponseRecord, Store


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    where: Path | str = (tmp_path / "maas.sqlite3" if request.param == "sqlite"
                         else str(request.getfixturevalue("postgres").create_database()))
    s = Store(where)
    yield s
    s.close()


def record(response_id: str, owner: str, created_at: int = 1000, ttl: int = 100) -> ResponseRecord:
    body = {"id": response_id, "object": "response", "status": "completed", "metadata": {"z": "1", "a": "2"}}
    items = [{"id": "msg_1", "type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}]
    return ResponseRecord(id=response_id, owner=owner, created_at=created_at, expires_at=created_at + ttl,
                          body=body, input_items=items, conversation=items)


def test_a_response_is_seen_only_by_its_owner(store: Store) -> None:
    store.add_response(record("resp_a", "key_a"))
    found = store.get_response("resp_a", "key_a", now=1001)
    assert found is not None and found.body["status"] == "completed" and found.input_items[0]["id"] == "msg_1"
    assert store.get_response("resp_a", "key_b", now=1001) is None
    assert not store.delete_response("resp_a", "key_b")
    assert store.get_response("resp_a", "key_a", now=1001) is not None


def test_deleted_and_expired_responses_are_gone(store: Store) -> None:
    store.add_response(record("resp_a", "key_a", created_at=1000, ttl=100))
    store.add_response(record("resp_b", "key_a", created_at=1000, ttl=500))
    assert store.get_response("resp_a", "key_a", now=1099) is not None
    assert store.get_response("resp_a", "key_a", now=1100) is None  # expired, though not yet swept
    assert store.delete_response("resp_b", "key_a") and not store.delete_response("resp_b", "key_a")
    assert store.get_response("resp_b", "key_a", now=1001) is None


def test_writing_sweeps_every_expired_response(store: Store) -> None:
    store.add_response(record("resp_old", "key_a", created_at=1000, ttl=10))
    store.add_response(record("resp_new", "key_b", created_at=2000, ttl=10))
    # A read that ignores expiry (now=0) still misses the old one: the write removed its row.
    assert store.get_response("resp_old", "key_a", now=0) is None
    assert store.get_response("resp_new", "key_b", now=0) is not None


def test_json_keeps_the_order_it_was_written_in(store: Store) -> None:
    store.add_response(record("resp_a", "key_a"))
    found = store.get_response("resp_a", "key_a", now=1001)
    assert found is not None
    assert list(found.body) == ["id", "object", "status", "metadata"]
    assert list(found.body["metadata"]) == ["z", "a"]
