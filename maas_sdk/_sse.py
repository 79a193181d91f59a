"""Server-sent events decoding (WHATWG HTML, "event stream interpretation").

One incremental decoder, fed raw bytes exactly as they come off the socket, serves
both the sync and the async streams. Bytes are split into lines before anything is
decoded: line terminators are ASCII and never occur inside a multi-byte UTF-8
sequence, so a chunk boundary inside a character cannot corrupt it. The hot path
is `bytes.rfind` + `bytes.splitlines` and a prefix test per line: no regexes, no
per-byte loop.
"""

from __future__ import annotations

__all__ = ["SSEDecoder", "ServerSentEvent"]

_BOM = b"\xef\xbb\xbf"
_CR = 13


class ServerSentEvent:
    """One dispatched event: its type (`"message"` unless an `event:` field said otherwise),
    data (the `data:` lines joined by newlines), the last event id seen, and `retry`
    (milliseconds) when this event carried that field."""

    __slots__ = ("data", "event", "id", "retry")

    def __init__(self, data: str, event: str = "message", id: str | None = None, retry: int | None = None):
        self.data = data
        self.event = event
        self.id = id
        self.retry = retry

    def __repr__(self) -> str:
        return f"ServerSentEvent(event={self.event!r}, data={self.data!r}, id={self.id!r}, retry={self.retry!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ServerSentEvent):
            return NotImplemented
        return (self.event, self.data, self.id, self.retry) == (other.event, other.data, other.id, other.retry)

    __hash__ = None  # type: ignore[assignment]


class SSEDecoder:
    """Feed bytes with `feed()`, get back the events they complete.

    An event ends at a blank line (`\\n\\n`, `\\r\\r`, `\\r\\n\\r\\n` or any mix).
    At the end of the body, an event without its blank line is discarded, as the
    standard says; `pending` tells whether anything was left unfinished.
    """

    __slots__ = ("_data", "_event", "_retry", "_skip_lf", "_started", "_tail", "last_event_id")

    def __init__(self) -> None:
        self._tail = b""
        self._started = False
        # The previous chunk ended in "\r": a "\n" starting the next one belongs to that terminator.
        self._skip_lf = False
        self._data: list[bytes] = []
        self._event: str | None = None
        self._retry: int | None = None
        self.last_event_id: str | None = None

    @property
    def pending(self) -> bool:
        """Whether bytes or fields of an unfinished event are buffered."""
        return bool(self._tail or self._data or self._event is not None or self._retry is not None)

    def feed(self, chunk: bytes) -> list[ServerSentEvent]:
        if self._skip_lf and chunk:
            self._skip_lf = False
            if chunk[0] == 10:
                chunk = chunk[1:]
        if self._tail:
            chunk = self._tail + chunk
        if not self._started:
            if len(chunk) < len(_BOM) and _BOM.startswith(chunk):
                self._tail = chunk
                return []
            self._started = True
            chunk = chunk.removeprefix(_BOM)
        cut = max(chunk.rfind(b"\n"), chunk.rfind(b"\r"))
        if cut < 0:
            self._tail = chunk
            return []
        self._tail = chunk[cut + 1:]
        if chunk[cut] == _CR and cut == len(chunk) - 1:
            self._skip_lf = True
        return self._lines(chunk[: cut + 1].splitlines())

    def _lines(self, lines: list[bytes]) -> list[ServerSentEvent]:
        events: list[ServerSentEvent] = []
        data = self._data
        for line in lines:
            if not line:
                if data:
                    events.append(self._dispatch())
                    data = self._data
                else:
                    self._event = None
                    self._retry = None
            elif line[:5] == b"data:":
                data.append(line[6:] if line[5:6] == b" " else line[5:])
            elif line[0] != 58:  # ":" starts a comment
                self._field(line)
        return events

    def _field(self, line: bytes) -> None:
        name, _, value = line.partition(b":")
        if value[:1] == b" ":
            value = value[1:]
        if name == b"data":
            self._data.append(value)
        elif name == b"event":
            self._event = value.decode("utf-8", "replace")
        elif name == b"id":
            if b"\0" not in value:
                self.last_event_id = value.decode("utf-8", "replace")
        elif name == b"retry" and value.isdigit():
            self._retry = int(value)

    def _dispatch(self) -> ServerSentEvent:
        data = self._data
        raw = data[0] if len(data) == 1 else b"\n".join(data)
        event = ServerSentEvent(
            raw.decode("utf-8", "replace"), self._event or "message", self.last_event_id, self._retry
        )
        self._data = []
        self._event = None
        self._retry = None
        return event
