"""The running batch of a continuous-batching engine: KV cache, attention mask and positions.

Rows are left-padded so that every row's newest token sits in the last column; one forward
per step then decodes all rows at once. Sequences join by merging their freshly prefilled
cache into the batch (padding the shorter side on the left) and leave by selecting the
remaining rows. Padding columns no row needs any more are trimmed so the cache does not grow
with the history of sequences that already left.

The cache is a transformers `DynamicCache` whose layers hold `keys`/`values` tensors shaped
`[batch, kv_heads, columns, head_dim]`; the helpers here edit those tensors in place.
Sliding-window and linear-attention layers keep state that left-padding would corrupt, so
only plain `DynamicLayer`s are accepted.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer


def check_mergeable(cache: DynamicCache) -> None:
    """Raise ValueError if `cache` has layers whose rows cannot be padded, merged or split."""
    for i, layer in enumerate(cache.layers):
        if type(layer) is not DynamicLayer:
            raise ValueError(
                f"layer {i} uses {type(layer).__name__}; continuous batching needs full-attention "
                "DynamicLayer caches"
            )


def _filled(cache: DynamicCache) -> list[tuple[DynamicLayer, torch.Tensor, torch.Tensor]]:
    """Each layer that holds tensors, with its keys and values."""
    out = []
    for layer in cache.layers:
        if isinstance(layer, DynamicLayer) and layer.keys is not None and layer.values is not None:
            out.append((layer, layer.keys, layer.values))
    return out


def select_rows(cache: DynamicCache, rows: torch.Tensor) -> None:
    """Keep only `rows` (a 1-D index tensor), in that order."""
    for layer, keys, values in _filled(cache):
        layer.keys = keys.index_select(0, rows)
        layer.values = values.index_select(0, rows)


def drop_left_columns(cache: DynamicCache, n: int) -> None:
    """Remove the first `n` columns (padding every row has)."""
    if n <= 0:
        return
    for layer, keys, values in _filled(cache):
        layer.keys = keys[:, :, n:, :]
        layer.values = values[:, :, n:, :]


def pad_left_columns(cache: DynamicCache, n: int) -> None:
    """Prepend `n` zero columns, which the attention mask will hide."""
    if n <= 0:
        return
    for layer, keys, values in _filled(cache):
        layer.keys = F.pad(keys, (0, 0, n, 0))
        layer.values = F.pad(values, (0, 0, n, 0))


def concat_rows(dst: DynamicCache, src: DynamicCache) -> None:
    """Append the rows of `src` to `dst`; both must have the same number of columns."""
    dst_layers, src_layers = _filled(dst), _filled(src)
    if len(dst_layers) != len(src_layers):
        raise ValueError(f"caches have {len(dst_layers)} and {len(src_layers)} filled layers")
    for (layer, keys, values), (_, src_keys, src_values) in zip(dst_layers, src_layers):
        layer.keys = torch.cat([keys, src_keys], dim=0)
        layer.values = torch.cat([values, src_values], dim=0)


def left_padded(
    rows: list[list[int]], pad_id: int, device: torch.device | str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids and attention mask for `rows`, left-padded to the longest row."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        if r:
            ids[i, width - len(r) :] = torch.tensor(r, dtype=torch.long)
            mask[i, width - len(r) :] = 1
    return ids.to(device), mask.to(device)


def positions_from_mask(mask: torch.Tensor) -> torch.Tensor:
    """Per-row position ids for a left-padded mask (padding gets 0)."""
    return (mask.cumsum(-1) - 1).clamp(min=0)


@dataclass
class PaddedBatch:
    """Rows decoding together.

    `mask` is `[rows, columns]` (1 for real tokens), `positions[i]` is the position id of the
    token row i feeds next, and `next_tokens[i]` is that token.
    """

    cache: DynamicCache
    mask: torch.Tensor
    positions: torch.Tensor
    next_tokens: torch.Tensor

    @property
    def size(self) -> int:
        return int(self.mask.shape[0])

    def step_inputs(self) -> dict[str, torch.Tensor]:
        """Model inputs for one decode step; call `advance` once the forward succeeded."""
        ones = torch.ones((self.size, 1), dtype=self.mask.dtype, device=self.mask.device)
        return {
            "input_ids": self.next_tokens.unsqueeze(1),
            "attention_mask": torch.cat([self.mask, ones], dim=1),
            "position_ids": self.positions.unsqueeze(1),
        }

    def advance(self, attention_mask: torch.Tensor, next_tokens: torch.Tensor) -> None:
        """Record that the fed tokens are now cached and which tokens come next."""
        self.mask = attention_mask
        self.positions = self.positions + 1
        self.next_tokens = next_tokens

    def keep(self, rows: list[int]) -> None:
        """Keep only `rows` (in order), then trim padding columns no remaining row needs."""
        if rows == list(range(self.size)):
            return
        index = torch.tensor(rows, dtype=torch.long, device=self.mask.device)
        select_rows(self.cache, index)
        self.mask = self.mask.index_select(0, index)
        self.positions = self.positions.index_select(0, index)
        self.next_tokens = self.next_tokens.index_select(0, index)
        self._trim()

    def merge(self, other: PaddedBatch) -> None:
        """Append `other`'s rows, left-padding whichever side has fewer columns."""
        width = max(self.mask.shape[1], other.mask.shape[1])
        for part in (self, other):
            extra = width - int(part.mask.shape[1])
            if extra:
                pad_left_columns(part.cache, extra)
                part.mask = F.pad(part.mask, (extra, 0))
        concat_rows(self.cache, other.cache)
        self.mask = torch.cat([self.mask, other.mask], dim=0)
        self.positions = torch.cat([self.positions, other.positions], dim=0)
        self.next_tokens = torch.cat([self.next_tokens, other.next_tokens], dim=0)

    def _trim(self) -> None:
        used = self.mask.any(dim=0)
        if bool(used.all()) or not bool(used.any()):
            return
        first = int(used.int().argmax())
        drop_left_columns(self.cache, first)
        self.mask = self.mask[:, first:]
