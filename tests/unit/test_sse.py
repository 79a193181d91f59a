"""The SSE decoder against the WHATWG rules, fed whole and split at every byte."""

from __future__ import annotations

import pytest

from maas_sdk import ServerSentEvent, SSEDecoder


def decode(*chunks: bytes) -> list[ServerSentEvent]:
    decoder = SSEDecoder()
    events: list[ServerSentEvent] = []
    for piece in chunks:
        events.extend(decoder.feed(piece))
    return events


# One stream exercising every rule: BOM, LF/CRLF/CR (and mixes), comments, named events,
# ids, retry, multi-line data, a field without a colon, multi-byte UTF-8, an event without data.
TRICKY = (
    b"\xef\xbb\xbf"
    b": a comment\n"
    b"data: first\n\n"
    b"event: update\r\n"
    b"id: 7\r\n"
    b"retry: 1500\r\n"
    b"data: line one\r\n"
    b"data:line two\r\n\r\n"
    b"data: caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\r\r"
    b"event: ignored-without-data\n\n"
    b"data\n"
    b"data:  two spaces\n\n"
    b"id: 8\rdata: cr only\r\r"
    b"data: last\r\n\n"
)
TRICKY_EVENTS = [
    ServerSentEvent("first"),
    ServerSentEvent("line one\nline two", event="update", id="7", retry=1500),
    ServerSentEvent("café € 😀", id="7"),
    ServerSentEvent("\n two spaces", id="7"),
    ServerSentEvent("cr only", id="8"),
    ServerSentEvent("last", id="8"),
]


def test_decodes_every_rule_when_fed_whole() -> None:
    assert decode(TRICKY) == TRICKY_EVENTS


@pytest.mark.parametrize("cut", range(1, len(TRICKY)))
def test_same_events_whatever_the_split(cut: int) -> None:
    assert decode(TRICKY[:cut], TRICKY[cut:]) == TRICKY_EVENTS


def test_same_events_fed_one_byte_at_a_time() -> None:
    assert decode(*(TRICKY[i : i + 1] for i in range(len(TRICKY)))) == TRICKY_EVENTS


def test_same_events_split_in_three_with_empty_chunks() -> None:
    for first in range(0, len(TRICKY), 7):
        for second in range(first, len(TRICKY), 11):
            pieces = (TRICKY[:first], b"", TRICKY[first:second], TRICKY[second:])
            assert decode(*pieces) == TRICKY_EVENTS


def test_cr_at_chunk_end_then_lf_is_one_terminator() -> None:
    # "\r" ends one chunk and "\n" starts the next: one line end, not a blank line.
    assert decode(b"data: a\r", b"\ndata: b\r\n\r\n") == [ServerSentEvent("a\nb")]


def test_bom_only_stripped_at_start() -> None:
    assert decode(b"\xef\xbb", b"\xbfdata: x\n\n") == [ServerSentEvent("x")]
    assert decode(b"data: \xef\xbb\xbfx\n\n") == [ServerSentEvent("\ufeffx")]


def test_id_persists_and_nul_id_is_ignored() -> None:
    events = decode(b"id: 1\ndata: a\n\nid: 2\x003\ndata: b\n\nid\ndata: c\n\n")
    assert [e.id for e in events] == ["1", "1", ""]


def test_retry_needs_digits_only() -> None:
    events = decode(b"retry: 12x\ndata: a\n\nretry: 30\ndata: b\n\n")
    assert [e.retry for e in events] == [None, 30]


def test_unknown_fields_ignored_and_only_one_space_stripped() -> None:
    assert decode(b"foo: bar\ndata:   x\n\n") == [ServerSentEvent("  x")]


def test_unfinished_event_is_not_dispatched_and_reported_pending() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: complete\n\ndata: cut") == [ServerSentEvent("complete")]
    assert decoder.pending
    decoder2 = SSEDecoder()
    decoder2.feed(b"data: a\n")
    assert decoder2.pending
    decoder3 = SSEDecoder()
    decoder3.feed(b"data: a\n\n")
    assert not decoder3.pending


def test_invalid_utf8_is_replaced_not_fatal() -> None:
    assert decode(b"data: \xff\n\n") == [ServerSentEvent("\ufffd")]


def test_many_events_in_one_chunk() -> None:
    body = b"".join(b"data: %d\n\n" % i for i in range(1000))
    assert [e.data for e in decode(body)] == [str(i) for i in range(1000)]
