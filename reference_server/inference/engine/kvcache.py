"""The KV cache of a continuous-batching engine: one preallocated row (slot) per sequence.

Each layer's keys and values live in one tensor `[slots, kv_heads, capacity, head_dim]`. A
sequence keeps its slot from admission to the end; its cached tokens are positions
`0..length-1` of that row. So a decode step writes one new column per row in place and
attends over a view of the first `width` columns, with a mask per row hiding the columns
past each row's own length: nothing is re-padded, merged or trimmed when sequences join
or leave, and no step copies the cache (a `DynamicCache` concatenates every layer's whole
cache at every step). The rows that decode must be slots `0..d-1` so that the step's keys
are a view; `swap` moves a sequence's row when that needs arranging (once per join or leave,
copying only the cached columns).

The engine tells the cache what the next forward writes (`plan_decode` / `plan_prefill`),
then runs the model with the mask `attention_mask` returned (4-D, which transformers passes
through untouched); the model's attention layers call `update`, which writes this step's
keys and values where the plan says and returns the keys and values to attend to.

Prefill chunks are left-padded within their forward (so `logits_to_keep=1` picks each
row's last real token); only the real columns are written, after the row's cached prefix.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

# Capacity grows in steps of this many columns, and the allocated rows in steps of this
# many slots (each growth copies the cache once).
CAPACITY_STEP = 256
ROW_STEP = 4


def check_supported(config: Any) -> None:
    """Raise ValueError if the model has layers whose cache is not a plain full-attention
    key/value history (sliding windows, linear attention), which slots cannot hold."""
    from transformers import DynamicCache
    from transformers.cache_utils import DynamicLayer

    for i, layer in enumerate(DynamicCache(config=config).layers):
        if type(layer) is not DynamicLayer:
            raise ValueError(f"layer {i} uses {type(layer).__name__}; continuous batching needs "
                             "full-attention layers")


def _round_up(n: int, step: int) -> int:
    return -(-n // step) * step


@dataclass
class _Plan:
    kind: str  # "decode" or "prefill"
    rows: int  # decode: slots 0..rows-1
    slots: list[int]  # prefill: the slot of each input row
    starts: list[int]  # prefill: cached tokens before each row's chunk
    lengths: list[int]  # prefill: real tokens of each row's chunk
    positions: torch.Tensor | None  # decode: the column each row writes
    width: int  # columns to attend over
    rows_index: torch.Tensor | None = None  # decode: 0..rows-1, made once per step


class SlotKVCache:
    """Per-layer `[slots, kv_heads, capacity, head_dim]` keys and values (see module docstring).

    Storage is allocated on the first forward (dtype and head shape come from the model's own
    key states) and grows along `capacity` as sequences get longer, up to `max_capacity`, and
    along the slots as more sequences run at once, up to `slots`.
    """

    # transformers' mask and generation helpers read these from any cache object.
    is_compileable = False
    is_sliding = False

    def __init__(self, layers: int, slots: int, max_capacity: int, device: torch.device) -> None:
        self.layers = layers
        self.slots = slots
        self.max_capacity = max_capacity
        self.device = device
        self.keys: list[torch.Tensor] = []
        self.values: list[torch.Tensor] = []
        self.capacity = 0
        self.rows = 0  # allocated slots
        self._plan: _Plan | None = None
        self._needed = (0, 0)

    @property
    def allocated_tokens(self) -> int:
        """Token columns held in memory, all allocated slots together."""
        return self.rows * self.capacity if self.keys else 0

    def bytes_per_token(self) -> int:
        """Bytes one cached token takes across all layers (0 before the first forward)."""
        if not self.keys:
            return 0
        k = self.keys[0]
        return 2 * len(self.keys) * int(k.shape[1]) * int(k.shape[3]) * k.element_size()

    def release(self) -> None:
        """Free the storage (the engine is idle); the next forward allocates it again."""
        self.keys, self.values, self.capacity, self.rows = [], [], 0, 0

    # ----- planning the next forward -----

    def plan_decode(self, lengths: list[int]) -> dict[str, torch.Tensor]:
        """Rows `0..len(lengths)-1` each append one token at column `lengths[i]`; return the
        model inputs but the token ids: positions and the 4-D mask."""
        width = max(lengths) + 1
        positions = torch.tensor(lengths, dtype=torch.long, device=self.device)
        self._reserve(width, len(lengths))
        self._plan = _Plan("decode", len(lengths), [], [], [], positions, width,
                           torch.arange(len(lengths), device=self.device))
        cols = torch.arange(width, device=self.device)
        mask = (cols.unsqueeze(0) <= positions.unsqueeze(1))[:, None, None, :]
        return {"attention_mask": mask, "position_ids": positions.unsqueeze(1)}

    def plan_prefill(self, slots: list[int], starts: list[int], chunks: list[list[int]],
                     pad_id: int) -> dict[str, torch.Tensor]:
        """Rows of `chunks` (token ids) go after `starts[i]` cached tokens of `slots[i]`; return
        the model inputs: left-padded ids, positions and the 4-D mask."""
        lengths = [len(c) for c in chunks]
        cols = max(lengths)
        width = max(s + n for s, n in zip(starts, lengths))
        self._reserve(width, max(slots) + 1)
        self._plan = _Plan("prefill", len(slots), slots, starts, lengths, None, width)
        ids = torch.full((len(chunks), cols), pad_id, dtype=torch.long)
        pos = torch.zeros((len(chunks), cols), dtype=torch.long)
        mask = torch.zeros((len(chunks), cols, width), dtype=torch.bool)
        for i, (chunk, start, n) in enumerate(zip(chunks, starts, lengths)):
            pad = cols - n
            ids[i, pad:] = torch.tensor(chunk, dtype=torch.long)
            pos[i, pad:] = torch.arange(start, start + n)
            # Real query at absolute position p sees columns 0..p; padding sees column 0 only.
            mask[i, pad:, :] = torch.arange(width).unsqueeze(0) <= pos[i, pad:].unsqueeze(1)
            mask[i, :pad, 0] = True
        return {"input_ids": ids.to(self.device), "position_ids": pos.to(self.device),
                "attention_mask": mask.unsqueeze(1).to(self.device)}

    def reserve(self, width: int, rows: int) -> None:
        """Make room for `width` columns in `rows` slots now (one growth for a long prompt,
        instead of one per `CAPACITY_STEP` of its prefill slices)."""
        self._reserve(min(width, self.max_capacity), rows)

    def _reserve(self, width: int, rows: int) -> None:
        if width > self.max_capacity:
            raise ValueError(f"a sequence needs {width} cached tokens; the cache holds at most {self.max_capacity}")
        self._needed = (width, rows)
        if self.keys and (width > self.capacity or rows > self.rows):
            self._grow(width, rows)

    def _sizes(self, width: int, rows: int) -> tuple[int, int]:
        return (min(self.max_capacity, _round_up(max(width, self.capacity, 1), CAPACITY_STEP)),
                min(self.slots, _round_up(max(rows, self.rows, 1), ROW_STEP)))

    def _grow(self, width: int, rows: int) -> None:
        capacity, count = self._sizes(width, rows)
        for store in (self.keys, self.values):
            for i, old in enumerate(store):
                new = old.new_zeros((count, old.shape[1], capacity, old.shape[3]))
                new[: self.rows, :, : self.capacity] = old
                store[i] = new
        self.capacity, self.rows = capacity, count

    def _allocate(self, layers: int, heads: int, head_dim: int, dtype: torch.dtype) -> None:
        capacity, rows = self._sizes(*self._needed)
        shape = (rows, heads, capacity, head_dim)
        self.keys = [torch.zeros(shape, dtype=dtype, device=self.device) for _ in range(layers)]
        self.values = [torch.zeros(shape, dtype=dtype, device=self.device) for _ in range(layers)]
        self.capacity, self.rows = capacity, rows

    # ----- called by the model's attention layers -----

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, layer_idx: int,
               *args: Any, **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        plan = self._plan
        if plan is None:
            raise RuntimeError("SlotKVCache.update called without a planned step")
        if not self.keys:  # first forward: every layer gets the first layer's shape
            self._allocate(self.layers, key_states.shape[1], key_states.shape[3], key_states.dtype)
        keys, values = self.keys[layer_idx], self.values[layer_idx]
        if plan.kind == "decode":
            rows = plan.rows_index
            keys[rows, :, plan.positions] = key_states[:, :, 0]
            values[rows, :, plan.positions] = value_states[:, :, 0]
            return keys[: plan.rows, :, : plan.width], values[: plan.rows, :, : plan.width]
        cols = key_states.shape[2]
        for i, (slot, start, n) in enumerate(zip(plan.slots, plan.starts, plan.lengths)):
            keys[slot, :, start : start + n] = key_states[i, :, cols - n :]
            values[slot, :, start : start + n] = value_states[i, :, cols - n :]
        first = plan.slots[0]
        if plan.slots == list(range(first, first + len(plan.slots))):
            return keys[first : first + plan.rows, :, : plan.width], values[first : first + plan.rows, :, : plan.width]
        index = torch.tensor(plan.slots, device=keys.device)
        return keys.index_select(0, index)[:, :, : plan.width], values.index_select(0, index)[:, :, : plan.width]

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self._plan.width if self._plan is not None else 0

    # ----- moving rows -----

    def swap(self, a: int, b: int, length_a: int, length_b: int) -> None:
        """Exchange the cached tokens of slots `a` and `b` (their first `length_*` columns)."""
        n = max(length_a, length_b)
        if a == b or n == 0 or not self.keys:
            return
        for store in (self.keys, self.values):
            for t in store:
                tmp = t[a, :, :n].clone()
                t[a, :, :n] = t[b, :, :n]
                t[b, :, :n] = tmp

    def read(self, slot: int, length: int) -> torch.Tensor:
        """A copy of slot `slot`'s first `length` tokens: `[layers, 2, kv_heads, length, head_dim]`."""
        return torch.stack([torch.stack([k[slot, :, :length], v[slot, :, :length]])
                            for k, v in zip(self.keys, self.values)])

    def write(self, slot: int, kv: torch.Tensor, length: int) -> None:
        """Put the first `length` tokens of `kv` (from `read`) into slot `slot`."""
        if not self.keys:
            self._needed = (length, slot + 1)
            self._allocate(int(kv.shape[0]), int(kv.shape[2]), int(kv.shape[4]), kv.dtype)
        elif length > self.capacity or slot >= self.rows:
            self._grow(length, slot + 1)
        for layer, (k, v) in enumerate(zip(self.keys, self.values)):
            k[slot, :, :length] = kv[layer, 0, :, :length]
            v[slot, :, :length] = kv[layer, 1, :, :length]
