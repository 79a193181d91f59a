"""How a single token reads: its text and its UTF-8 bytes, for logprobs.

A byte-level BPE token (GPT-2, Llama 3, SmolLM2, ...) is a string of stand-in characters, one
per byte, so its exact bytes are recovered even when it holds half of a UTF-8 character (OpenAI
reports those bytes; the text then shows U+FFFD). Other tokenizers (SentencePiece, WordPiece)
fall back to decoding the token alone.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any


@lru_cache(maxsize=1)
def _byte_of_char() -> dict[str, int]:
    """GPT-2's reversible byte <-> printable-character table, inverted."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars = list(printable)
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return {chr(c): b for b, c in zip(printable, chars)}


class TokenStrings:
    """Text and bytes of token ids, cached per id (one instance per tokenizer)."""

    def __init__(self, tokenizer: Any) -> None:
        self._tokenizer = tokenizer
        self._cache: dict[int, tuple[str, list[int]]] = {}

    def __call__(self, token_id: int) -> tuple[str, list[int]]:
        found = self._cache.get(token_id)
        if found is None:
            found = self._cache[token_id] = self._compute(token_id)
        return found

    def text(self, token_id: int) -> str:
        return self(token_id)[0]

    def _compute(self, token_id: int) -> tuple[str, list[int]]:
        piece = self._tokenizer.convert_ids_to_tokens(token_id)
        table = _byte_of_char()
        if isinstance(piece, str) and piece and all(c in table for c in piece):
            raw = bytes(table[c] for c in piece)
            return raw.decode("utf-8", errors="replace"), list(raw)
        text = str(self._tokenizer.decode([token_id], skip_special_tokens=False,
                                          clean_up_tokenization_spaces=False))
        return text, list(text.encode("utf-8"))
