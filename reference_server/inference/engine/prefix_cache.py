"""Reuse of prompt prefixes: the keys and values of recent prompts, bounded in bytes, LRU.

Chat requests of one application usually start with the same system prompt, and prefilling
it again for every request is most of their time to first token. Once a prompt is
prefilled, its cached tokens are kept here (see below); a new prompt then starts from the longest
prefix it shares with a stored one (at least `min_tokens`), copied into its slot, and only
the rest is prefilled. The last `PREFILLED_TAIL` prompt tokens are always prefilled: the last
one's logits pick the first output token, and it is prefilled beside the one before it, not
alone, so that a repeated prompt's logits are the first time's to the last bit (see below).

Why two tokens and not one: a forward of one token multiplies each weight by a vector, a
forward of several by a matrix, and on CPU the two round differently (a matrix product of two
or more rows gives each row the same bits whatever the count; a single row is summed in
another order). In float32 the difference is far below any logit margin; in bfloat16 it is
one unit in the last place of a few activations, enough to flip a near-tie of the first token
(the default generator asked "What is the capital of France?" puts "The" 0.08 logits above
"L" in float32). With one token prefilled, a prompt asked again alone answered otherwise than
the first time; with two, the prompt's last position is computed exactly as in its full
prefill.

Entries are whole prompts: a system prompt shared by many requests is found as the common
prefix of any stored one. A new prompt that extends a stored one replaces it, one that is a
prefix of a stored one is not stored again. When the bytes held pass `max_bytes`, the least
recently used entries go first.

Entries live in spaces: the rows of one fine-tuned adapter (its name) or of the base model
(""). A prompt is only matched against entries of its own space, since keys and values computed
through one adapter's projections are not another's. (The entries of an adapter no longer
served are never matched again and leave as the least recently used.)

An entry is views of the prompt's own cache row (`SlotKVCache.read`), not a copy, so it
keeps that whole row in memory: its bytes are counted as the row's, not as the prompt's.
"""

from __future__ import annotations

from collections import OrderedDict

from reference_server.inference.engine.kvcache import PrefixKV

# Prompt tokens always prefilled after a reused prefix (see the module docstring).
PREFILLED_TAIL = 2


class PrefixCache:
    def __init__(self, max_bytes: int, min_tokens: int = 16) -> None:
        self.max_bytes = max_bytes
        self.min_tokens = min_tokens
        self._entries: OrderedDict[tuple[str, tuple[int, ...]], PrefixKV] = OrderedDict()
        self.bytes = 0
        self.hits = 0
        self.hit_tokens = 0
        self.lookups = 0

    @property
    def enabled(self) -> bool:
        return self.max_bytes > 0

    def __len__(self) -> int:
        return len(self._entries)

    def lookup(self, prompt: list[int], space: str = "") -> tuple[int, PrefixKV | None]:
        """The number of leading tokens of `prompt` whose keys and values are stored (never its
        last `PREFILLED_TAIL`), and those (keys and values `[layers, kv_heads, tokens, head_dim]`, to be
        sliced)."""
        if not self.enabled:
            return 0, None
        self.lookups += 1
        best, best_key = 0, None
        limit = len(prompt) - PREFILLED_TAIL
        for key in self._entries:
            if key[0] != space:
                continue
            n = _common_prefix(key[1], prompt, limit)
            if n > best:
                best, best_key = n, key
        if best_key is None or best < self.min_tokens:
            return 0, None
        self._entries.move_to_end(best_key)
        self.hits += 1
        self.hit_tokens += best
        return best, self._entries[best_key]

    def wants(self, prompt: list[int], space: str = "") -> bool:
        """Whether `insert` would store `prompt` (so the caller copies its cache only then)."""
        if not self.enabled or len(prompt) < self.min_tokens:
            return False
        key = tuple(prompt)
        return not any(s == space and len(k) >= len(key) and k[: len(key)] == key for s, k in self._entries)

    def insert(self, prompt: list[int], kv: PrefixKV, space: str = "") -> None:
        """Store `kv`, the cached keys and values of all of `prompt`, evicting as needed."""
        key = tuple(prompt)
        size = _held_bytes(kv)
        if size > self.max_bytes:
            return
        for old in [(s, k) for s, k in self._entries if s == space and len(k) < len(key) and key[: len(k)] == k]:
            self._drop(old)  # the new entry covers it
        self._entries[(space, key)] = kv
        self.bytes += size
        while self.bytes > self.max_bytes:
            self._drop(next(iter(self._entries)))

    def clear(self) -> None:
        self._entries.clear()
        self.bytes = 0

    def _drop(self, key: tuple[str, tuple[int, ...]]) -> None:
        self.bytes -= _held_bytes(self._entries.pop(key))


def _held_bytes(kv: PrefixKV) -> int:
    """Memory an entry keeps alive: the whole storage its views share."""
    return sum(t.untyped_storage().nbytes() for t in kv)


def _common_prefix(a: tuple[int, ...], b: list[int], limit: int) -> int:
    n = min(len(a), len(b), limit)
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i
