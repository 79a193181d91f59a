"""Tokenizing and detokenizing with a served model's tokenizer."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from reference_server.inference.tasks.errors import NLUError


def tokenize(loaded: Any, text: str, add_special_tokens: bool) -> tuple[list[int], list[str]]:
    ids = list(loaded.tokenizer(text, add_special_tokens=add_special_tokens)["input_ids"])
    return ids, [str(t) for t in loaded.tokenizer.convert_ids_to_tokens(ids)]


def detokenize(loaded: Any, tokens: Sequence[int]) -> str:
    size = len(loaded.tokenizer)
    for i, token in enumerate(tokens):
        if not 0 <= token < size:
            raise NLUError(f"tokens[{i}] = {token} is not a token id of this model (0 to {size - 1}).", "tokens")
    return str(loaded.tokenizer.decode(list(tokens)))
