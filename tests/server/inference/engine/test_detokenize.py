"""Incremental detokenization and stop matching."""

from __future__ import annotations

from reference_server.inference.engine.detokenize import IncrementalDetokenizer, StopMatcher
from reference_server.inference.loading import LoadedModel


def test_stop_matcher_holds_back_possible_stops() -> None:
    m = StopMatcher(["STOP", "\n\n"])
    assert m.feed("Hel") == ("Hel", False)
    assert m.feed("lo ST") == ("lo ", False)
    assert m.feed("ay\n") == ("STay", False)
    assert m.feed("\nmore") == ("", True)
    m = StopMatcher(["abc"])
    assert m.feed("xab") == ("x", False)
    assert m.flush() == "ab" and m.matched is None


def test_stop_matcher_names_the_stop_that_came_first() -> None:
    m = StopMatcher(["later", "first"])
    assert m.feed("the first one, later") == ("the ", True)
    assert m.matched == "first"  # Anthropic's `stop_sequence`


def test_incremental_detokenizer_never_splits_characters(generator: LoadedModel) -> None:
    tok = generator.tokenizer
    text = "Café ☕ naïve — 東京 🚀 done."
    ids = tok(text, add_special_tokens=False)["input_ids"]
    det = IncrementalDetokenizer(tok, [1, 2, 3], stop=[])
    deltas = [det.step([t])[0] for t in ids]
    assert all("\ufffd" not in d for d in deltas)
    assert "".join(deltas) + det.finish()[0] == text

    det = IncrementalDetokenizer(tok, [], stop=["東京"])
    out, stopped = "", False
    for t in ids:
        delta, stopped = det.step([t])
        out += delta
        if stopped:
            break
    assert stopped and out == "Café ☕ naïve — " and det.matched_stop == "東京"


