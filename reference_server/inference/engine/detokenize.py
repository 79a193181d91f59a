"""Incremental detokenization and stop sequences, one instance per sequence.

Streaming needs the text of each new token, but a token is not always text on its own: a
byte-level BPE token may hold half of a UTF-8 character, and SentencePiece decodes a word's
leading space differently at the start of a string. So each step decodes a short window of
recent tokens twice (with and without the new ones) and emits the difference, holding it back
while it ends in an incomplete character (the same scheme as vLLM and TGI).

Stop sequences are matched on the emitted text. Text that could be the start of a stop
sequence is held back until it either completes the stop (it is then cut, together with
everything after it) or diverges from it (it is then released).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

# Prompt tokens kept as decoding context, so the first generated token decodes as it would
# inside the full text.
_CONTEXT_TOKENS = 5
_REPLACEMENT = "\ufffd"


class StopMatcher:
    """Finds stop strings in streamed text, holding back possible stop prefixes."""

    def __init__(self, stops: Sequence[str]) -> None:
        self._stops = [s for s in stops if s]
        self._pending = ""
        self.matched: str | None = None  # the stop string that ended the text (Anthropic reports it)

    def feed(self, text: str) -> tuple[str, bool]:
        """Return the text safe to emit and whether a stop string was found (text before it)."""
        if not self._stops:
            return text, False
        buf = self._pending + text
        hits = [(i, s) for s in self._stops if (i := buf.find(s)) >= 0]
        if hits:
            self._pending = ""
            at, self.matched = min(hits, key=lambda hit: hit[0])
            return buf[:at], True
        hold = 0
        for s in self._stops:
            for k in range(min(len(s) - 1, len(buf)), hold, -1):
                if buf.endswith(s[:k]):
                    hold = k
                    break
        self._pending = buf[len(buf) - hold :]
        return buf[: len(buf) - hold], False

    def flush(self) -> str:
        """Release held-back text once the sequence ends without completing a stop."""
        out, self._pending = self._pending, ""
        return out


class IncrementalDetokenizer:
    """Turns a sequence's generated token ids into text deltas, with stop-sequence handling."""

    def __init__(self, tokenizer: Any, prompt_ids: Sequence[int], stop: Sequence[str]) -> None:
        self._tokenizer = tokenizer
        context = list(prompt_ids[-_CONTEXT_TOKENS:])
        self._tokens: list[int] = context
        self._prefix = 0
        self._read = len(context)
        self._stops = StopMatcher(stop)

    @property
    def matched_stop(self) -> str | None:
        """The stop sequence that ended the text, if one did."""
        return self._stops.matched

    def _decode(self, ids: list[int]) -> str:
        return str(self._tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False))

    def step(self, token_ids: Sequence[int]) -> tuple[str, bool]:
        """Add tokens; return the new text to emit and whether a stop sequence ended the text."""
        self._tokens.extend(token_ids)
        prefix_text = self._decode(self._tokens[self._prefix : self._read])
        full_text = self._decode(self._tokens[self._prefix :])
        if len(full_text) <= len(prefix_text) or full_text.endswith(_REPLACEMENT):
            return "", False
        delta = full_text[len(prefix_text) :]
        # Drop tokens that no longer affect decoding, keeping the window short.
        del self._tokens[: self._read]
        self._prefix, self._read = 0, len(self._tokens)
        return self._stops.feed(delta)

    def finish(self) -> tuple[str, bool]:
        """At the end of the sequence: the remaining text (an incomplete character decodes as
        U+FFFD) and whether a stop sequence occurs in it."""
        prefix_text = self._decode(self._tokens[self._prefix : self._read])
        full_text = self._decode(self._tokens[self._prefix :])
        text, stopped = self._stops.feed(full_text[len(prefix_text) :])
        if stopped:
            return text, True
        return text + self._stops.flush(), False
