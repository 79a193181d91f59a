"""JSONL validation on upload: each format is detected, and the first bad line is named."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reference_server import datasets
from reference_server.datasets import DatasetError

DATA = Path(__file__).resolve().parents[2] / "data"


def jsonl(*records: object) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in records).encode()


CHAT = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Arr, matey!"}]}
PROMPT = {"prompt": "2 + 2 =", "completion": " 4"}
TEXT = {"text": "Lovely soup.", "label": "positive"}


@pytest.mark.parametrize(
    ("record", "expected"),
    [(CHAT, "chat"), (PROMPT, "prompt_completion"), (TEXT, "classification")],
)
def test_each_format_is_detected(record: dict, expected: str) -> None:
    info = datasets.validate(jsonl(record, record, record))
    assert info.format == expected
    assert info.lines == 3


def test_the_shipped_data_sets_are_valid() -> None:
    expected = {
        "sentiment_train.jsonl": "classification",
        "sentiment_validation.jsonl": "classification",
        "sentiment_heldout.jsonl": "classification",
        "pirate_chat_train.jsonl": "chat",
        "pirate_chat_validation.jsonl": "chat",
        "relevance_train.jsonl": "classification",
        "relevance_heldout.jsonl": "classification",
    }
    for name, fmt in expected.items():
        info = datasets.validate((DATA / name).read_bytes())
        assert info.format == fmt, name
        if name.startswith("sentiment"):
            assert info.labels == ["negative", "positive"] and not info.pairs, name
        if name.startswith("relevance"):
            assert info.labels == ["irrelevant", "relevant"] and info.pairs, name


def test_pair_classification_data_is_read_with_its_second_text() -> None:
    pair = {"text": "When does it open?", "text_pair": "Doors open at 9 am.", "label": "relevant"}
    info = datasets.validate(jsonl(pair, {**pair, "label": "irrelevant"}))
    assert (info.format, info.pairs, info.labels) == ("classification", True, ["irrelevant", "relevant"])


def test_labels_are_collected_and_integers_read_as_strings() -> None:
    info = datasets.validate(jsonl({"text": "a", "label": 1}, {"text": "b", "label": 0}, {"text": "c", "label": 1}))
    assert info.labels == ["0", "1"]


def test_blank_lines_and_a_byte_order_mark_are_accepted() -> None:
    info = datasets.validate(b"\xef\xbb\xbf" + jsonl(TEXT) + b"\n   \n" + jsonl(TEXT))
    assert (info.format, info.lines) == ("classification", 2)


@pytest.mark.parametrize(
    ("lines", "bad_line", "words"),
    [
        ([TEXT, TEXT, "not json"], 3, "not valid JSON"),
        ([TEXT, [1, 2]], 2, "JSON object"),
        ([TEXT, PROMPT], 2, "started as classification"),
        ([{"text": "x"}], 1, '"label"'),
        ([{"text": "", "label": "a"}], 1, "empty"),
        ([{"text": "x", "label": True}], 1, '"label"'),
        ([CHAT, {"messages": [{"role": "user", "content": "no answer"}]}], 2, "no assistant message"),
        ([{"messages": [{"role": "pirate", "content": "x"}]}], 1, "role"),
        ([{"prompt": "x"}], 1, '"completion"'),
        ([{"something": "else"}], 1, "keys"),
        ([{"text": "a", "label": "b", "prompt": "c", "completion": "d"}], 1, "several formats"),
        ([{"text": "q", "text_pair": "", "label": "a"}], 1, '"text_pair" must not be empty'),
        ([{"text": "q", "text_pair": 3, "label": "a"}], 1, '"text_pair" must be a string'),
        ([TEXT, {"text": "q", "text_pair": "p", "label": "a"}], 2, "started with single texts"),
        ([{"text": "q", "text_pair": "p", "label": "a"}, TEXT], 2, "started with text pairs"),
    ],
)
def test_the_first_bad_line_is_reported(lines: list, bad_line: int, words: str) -> None:
    data = b"".join(line.encode() + b"\n" if isinstance(line, str) else jsonl(line) for line in lines)
    with pytest.raises(DatasetError) as caught:
        datasets.validate(data)
    assert caught.value.line == bad_line
    assert f"line {bad_line}:" in str(caught.value)
    assert words in str(caught.value)


def test_invalid_utf8_is_reported_with_its_line() -> None:
    with pytest.raises(DatasetError) as caught:
        datasets.validate(jsonl(TEXT) + b'{"text": "\xff", "label": "a"}\n')
    assert caught.value.line == 2


def test_an_empty_file_is_rejected() -> None:
    with pytest.raises(DatasetError, match="no examples"):
        datasets.validate(b"\n\n")


def test_load_returns_the_records(tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl"
    path.write_bytes(jsonl(PROMPT, PROMPT))
    info, records = datasets.load(path)
    assert info.format == "prompt_completion"
    assert records == [PROMPT, PROMPT]
