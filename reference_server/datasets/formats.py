"""JSONL data sets for fine-tuning and evaluation: validation on upload and format detection.

A file is checked once, when it is uploaded, so a fine-tuning job never starts on data it
cannot read and the user learns the first bad line number straight away. Every line must
be one JSON object of the same format:

- `chat`: `{"messages": [{"role": ..., "content": "..."}, ...]}` with at least one
  assistant message (the text the model learns to produce);
- `prompt_completion`: `{"prompt": "...", "completion": "..."}`;
- `classification`: `{"text": "...", "label": "..."}` (an integer label is read as its
  decimal string, so `0`/`1` data works unchanged), or with a second text,
  `{"text": query, "text_pair": passage, "label": "relevant"}`: a classifier trained on such
  pairs reads both texts together (a cross-encoder) and can rerank passages for a query. A
  file is pairs throughout or single texts throughout.

Blank lines are skipped. Extra keys are allowed (data often carries ids or metadata), but the
keys that decide the format must not be mixed on one line. A line must also be text that any
later step can use: JSON nested deeper than the parser allows, and lone UTF-16 surrogate
escapes (`"\\ud800"`, valid JSON but no Unicode text), are refused with their line number.

`validate_file` reads a stored upload line by line, so checking a file takes memory for its
longest line, not for the whole file. Batch API input files (purpose `batch`) are checked the
same way by `validate_batch_file`: one `{"custom_id", "method", "url", "body"}` request per
line, the bodies left to the routes that answer them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Literal

from reference_server.errors import InvalidRequest

Format = Literal["chat", "prompt_completion", "classification"]
FORMATS: tuple[Format, ...] = ("chat", "prompt_completion", "classification")
# Files of the Batch API: requests in (uploaded with purpose `batch`), results out (written by the server).
BATCH_FORMAT = "batch"
BATCH_OUTPUT_FORMAT = "batch_output"
_BATCH_KEYS = ("custom_id", "method", "url", "body")
GENERATION_FORMATS: tuple[Format, ...] = ("chat", "prompt_completion")

_ROLES = ("system", "user", "assistant", "developer")
# How many distinct labels a classification file may have; more is almost always a mistake
# (free text in the label column) and would build an enormous classification head.
MAX_LABELS = 1000
# A JSON escape in the UTF-16 surrogate range: lines without one cannot hold a lone surrogate.
SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


class RecordError(ValueError):
    """One line is not a valid record of its format; the message says what is wrong."""


class DatasetError(InvalidRequest):
    """The data is unusable; `line` is the 1-based line number of the first problem, if any."""

    def __init__(self, message: str, line: int | None = None) -> None:
        where = f"line {line}: {message}" if line is not None else message
        super().__init__(f"Invalid JSONL file: {where}", param="file", code="invalid_file")
        self.line = line


@dataclass
class DatasetInfo:
    """What validation learnt about a file: its format, example count and (for classification) labels."""

    format: Format
    lines: int
    labels: list[str] = field(default_factory=list)
    pairs: bool = False


def detect_line_format(record: Any) -> Format:
    """The format of one parsed JSONL line; raises RecordError saying what is wrong with it."""
    if not isinstance(record, dict):
        raise RecordError(f"expected a JSON object, got {type(record).__name__}")
    kinds = [name for name, keys in (("chat", ("messages",)), ("prompt_completion", ("prompt", "completion")),
                                      ("classification", ("text", "label")))
             if any(key in record for key in keys)]
    if not kinds:
        raise RecordError('expected "messages", "prompt"/"completion" or "text"/"label" keys')
    if len(kinds) > 1:
        raise RecordError(f"keys of several formats on one line ({', '.join(kinds)})")
    kind: Format = kinds[0]  # type: ignore[assignment]
    if kind == "chat":
        _check_messages(record["messages"])
    elif kind == "prompt_completion":
        _check_text(record, "prompt", allow_empty=True)
        _check_text(record, "completion", allow_empty=False)
    else:
        _check_text(record, "text", allow_empty=False)
        if "text_pair" in record:
            _check_text(record, "text_pair", allow_empty=False)
        label_of(record)
    return kind


def label_of(record: dict[str, Any]) -> str:
    """The label of a classification record as a string."""
    if "label" not in record:
        raise RecordError('missing "label"')
    label = record["label"]
    if isinstance(label, bool) or not isinstance(label, (str, int)):
        raise RecordError('"label" must be a string or an integer')
    text = str(label).strip()
    if not text:
        raise RecordError('"label" must not be empty')
    return text


def _check_text(record: dict[str, Any], key: str, *, allow_empty: bool) -> None:
    if key not in record:
        raise RecordError(f'missing "{key}"')
    value = record[key]
    if not isinstance(value, str):
        raise RecordError(f'"{key}" must be a string')
    if not allow_empty and not value.strip():
        raise RecordError(f'"{key}" must not be empty')


def _check_messages(messages: Any) -> None:
    if not isinstance(messages, list) or not messages:
        raise RecordError('"messages" must be a non-empty list')
    has_assistant = False
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise RecordError(f"messages[{i}] must be an object")
        role = message.get("role")
        if role not in _ROLES:
            raise RecordError(f"messages[{i}].role must be one of {', '.join(_ROLES)}")
        if not isinstance(message.get("content"), str):
            raise RecordError(f"messages[{i}].content must be a string")
        if role == "assistant":
            if not message["content"].strip():
                raise RecordError(f"messages[{i}] is an empty assistant message")
            has_assistant = True
    if not has_assistant:
        raise RecordError('"messages" has no assistant message to learn from')


def iter_records(data: bytes) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, parsed object) for every non-blank line; DatasetError on unusable lines."""
    return _records(data.split(b"\n"))


def read_records(source: BinaryIO) -> Iterator[tuple[int, dict[str, Any]]]:
    """`iter_records` for an open binary file (from its start), one line at a time."""
    source.seek(0)
    return _records(source)


def _records(lines: Iterable[bytes]) -> Iterator[tuple[int, dict[str, Any]]]:
    for number, raw in enumerate(lines, start=1):
        if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]
        if not raw.strip():
            continue
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise DatasetError("not valid UTF-8", number) from None
        try:
            record = json.loads(text)
        except RecursionError:
            raise DatasetError("JSON nested too deeply", number) from None
        except ValueError as exc:
            raise DatasetError(f"not valid JSON ({exc})", number) from None
        if not isinstance(record, dict):
            raise DatasetError(f"expected a JSON object, got {type(record).__name__}", number)
        if SURROGATE_ESCAPE.search(raw) and not _is_text(record):
            raise DatasetError("holds a lone UTF-16 surrogate escape (such as \\ud800), which is not text",
                               number)
        yield number, record


def _is_text(record: dict[str, Any]) -> bool:
    try:
        json.dumps(record, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def validate(data: bytes) -> DatasetInfo:
    """Check every line of a JSONL file; the format of the first line sets the file's format."""
    return _validate(data.split(b"\n"))


def validate_file(source: BinaryIO) -> DatasetInfo:
    """`validate` for an open binary file (from its start), read one line at a time."""
    source.seek(0)
    return _validate(source)


def _validate(lines: Iterable[bytes]) -> DatasetInfo:
    found: Format | None = None
    count = 0
    labels: dict[str, None] = {}
    pairs: bool | None = None
    for number, record in _records(lines):
        try:
            kind = detect_line_format(record)
        except RecordError as exc:
            raise DatasetError(str(exc), number) from None
        if found is None:
            found = kind
        elif kind != found:
            raise DatasetError(f"this line is {kind} data but the file started as {found} data", number)
        if kind == "classification":
            labels.setdefault(label_of(record))
            if len(labels) > MAX_LABELS:
                raise DatasetError(f"more than {MAX_LABELS} distinct labels", number)
            paired = "text_pair" in record
            if pairs is not None and paired != pairs:
                started = "text pairs" if pairs else "single texts"
                raise DatasetError(f'this line {"has" if paired else "has no"} "text_pair" but the file started '
                                   f"with {started}", number)
            pairs = paired
        count += 1
    if found is None:
        raise DatasetError("the file has no examples")
    return DatasetInfo(format=found, lines=count, labels=sorted(labels), pairs=bool(pairs))


def load(path: Path) -> tuple[DatasetInfo, list[dict[str, Any]]]:
    """Validate a stored file and return its records (used by training and evaluation)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DatasetError("the stored contents of this file are missing") from None
    return validate(data), [record for _, record in iter_records(data)]


@dataclass(frozen=True)
class BatchRequest:
    """One line of a batch input file: the request to run and the caller's name for it."""

    custom_id: str
    url: str
    body: dict[str, Any]


def batch_request_of(record: dict[str, Any], urls: Iterable[str]) -> BatchRequest:
    """The request on one line of a batch file; raises RecordError saying what is wrong. Only
    the envelope is checked: the body is the route's to judge when the line runs."""
    extra = sorted(set(record) - set(_BATCH_KEYS))
    if extra:
        raise RecordError(f"unknown key {extra[0]!r}; a batch line has {', '.join(_BATCH_KEYS)}")
    custom_id = record.get("custom_id")
    if not isinstance(custom_id, str) or not custom_id:
        raise RecordError('"custom_id" must be a non-empty string')
    if record.get("method") != "POST":
        raise RecordError('"method" must be "POST"')
    url = record.get("url")
    allowed = tuple(urls)
    if url not in allowed:
        raise RecordError(f'"url" must be one of {", ".join(allowed)}, got {url!r}')
    body = record.get("body")
    if not isinstance(body, dict):
        raise RecordError('"body" must be a JSON object')
    return BatchRequest(custom_id=custom_id, url=str(url), body=body)


@dataclass(frozen=True)
class BatchFileInfo:
    """What validation learnt about a batch input file: its request count and the url they call."""

    lines: int
    url: str


def validate_batch_file(source: BinaryIO, urls: Iterable[str], max_requests: int) -> BatchFileInfo:
    """Check every line of a batch input file: a well-formed request to one of `urls`, the same
    url on every line (a batch calls one endpoint), a `custom_id` no other line has, and at most
    `max_requests` lines."""
    allowed = tuple(urls)
    seen: dict[str, int] = {}
    first_url: str | None = None
    for number, record in read_records(source):
        try:
            request = batch_request_of(record, allowed)
        except RecordError as exc:
            raise DatasetError(str(exc), number) from None
        if first_url is None:
            first_url = request.url
        elif request.url != first_url:
            raise DatasetError(f'"url" is {request.url} but the file started with {first_url}; a batch calls '
                               "one endpoint", number)
        if request.custom_id in seen:
            raise DatasetError(f'"custom_id" {request.custom_id!r} is already used on line '
                               f'{seen[request.custom_id]}', number)
        if len(seen) >= max_requests:
            raise DatasetError(f"a batch holds at most {max_requests} requests", number)
        seen[request.custom_id] = number
    if first_url is None:
        raise DatasetError("the file has no requests")
    return BatchFileInfo(lines=len(seen), url=first_url)
