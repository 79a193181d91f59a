"""The KV cache of a continuous-batching engine: each sequence's keys and values in its own row.

A sequence holds one slot from admission to the end, and the slot owns two tensors, keys and
values `[layers, kv_heads, capacity, head_dim]`, sized to that sequence alone: its cached
tokens are positions `0..length-1`. A row grows on its own (a new tensor a little longer than
needed, the cached part copied, once every eighth of its length), and is freed the moment its
sequence leaves. So the memory held stays close to the sum of the live sequences' lengths,
whatever their mix: one 2,000-token prompt beside short chats costs its own 2,000 tokens,
not 2,000 columns in every row, and nothing is re-padded, merged or trimmed when sequences
join or leave.

A forward packs all its sequences' new tokens into one row without padding: one token for a
decoding sequence, a slice of prompt for a prefilling one, side by side. Attention then runs
segment by segment over each row's own cached tokens (`attend`, installed as the model's
attention function by `install`): no padding, no mask to build for decode tokens, and no copy
of the cache at any step (a `DynamicCache` concatenates every layer's whole cache at every
step; one shared padded tensor would attend over the longest row's width in every row).

The engine tells the cache what the next forward writes (`plan`) and runs the model with
`slot_cache=` this cache; the attention layers call `update`, which writes the step's keys
and values where the plan says, then `attend`.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

ATTENTION = "maas_slots"
# A prompt's cached keys and values, `[layers, kv_heads, tokens, head_dim]` each.
PrefixKV = tuple[torch.Tensor, torch.Tensor]
# A slot's whole row (keys, values), `[layers, kv_heads, capacity, head_dim]` each.
KVRow = tuple[torch.Tensor, torch.Tensor]
# Row capacities are multiples of this many tokens, plus an eighth of the length for growth.
CAPACITY_STEP = 16
# Decoding rows of at most this many cached tokens attend together over their lanes (`_Lanes`,
# `SlotKVCache.attend_packed`); longer rows attend one by one, so that the lanes' copy of the
# rows stays bounded (at most `max_running` rows of this many positions).
GATHER_TOKENS = 512
# Dtypes whose decoding rows attend in float32 (`decode_attention`, `lane_attention`) rather than SDPA.
REDUCED_DTYPES = (torch.bfloat16, torch.float16)


def check_supported(config: Any) -> None:
    """Raise ValueError if the model has layers whose cache is not a plain full-attention
    key/value history (sliding windows, linear attention), which rows cannot hold, or
    attention other than SDPA, which `attend` replaces."""
    from transformers import DynamicCache
    from transformers.cache_utils import DynamicLayer

    for i, layer in enumerate(DynamicCache(config=config).layers):
        if type(layer) is not DynamicLayer:
            raise ValueError(f"layer {i} uses {type(layer).__name__}; continuous batching needs "
                             "full-attention layers")
    implementation = config._attn_implementation
    if implementation not in ("sdpa", ATTENTION):
        raise ValueError(f"the model uses {implementation} attention; continuous batching needs sdpa")


def install(model: Any) -> None:
    """Make `attend` the model's attention wherever a forward passes `slot_cache=`; every other
    forward (`generate()`, scoring, training) keeps SDPA and its masks."""
    from reference_server.inference.engine import attention

    def attend(cache: SlotKVCache, module: Any, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
               scaling: float | None) -> torch.Tensor:
        return cache.attend(module.layer_idx, query, scaling)

    attention.install(model, ATTENTION, "slot_cache", attend)


def decode_attention(query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, mask: torch.Tensor | None,
                     scale: float) -> torch.Tensor:
    """Attention of one query per row in bfloat16 or float16: `query` `[rows, heads, head_dim]`
    against `keys` and `values` `[rows, kv_heads, length, head_dim]` (positions where `mask`
    `[rows, 1, 1, length]` is False left out); `[rows, heads, head_dim]` back.

    Two matmuls and a softmax, all in float32 (as `lane_attention`, so that a row attended alone
    and the same row in a batch of lanes differ only by summation order). On a CPU, SDPA's kernel
    for these dtypes spends most of its time on one-query rows: measured on the 2-core
    development machine in bfloat16, 8 rows of 90 cached tokens (9 heads over 3 key/value
    heads) took 400 us a call against 85 us here, 1,250 against 180 us at 300 tokens; a decode
    step of 8 rows calls it once per layer. In float32 SDPA is as fast and stays in use (its
    results are transformers' own, bit for bit).
    """
    rows, heads, dim = query.shape
    kv_heads = keys.shape[1]
    grouped = query.reshape(rows, kv_heads, heads // kv_heads, dim).float()
    scores = torch.matmul(grouped, keys.transpose(-1, -2).float()).mul_(scale)  # [rows, kv_heads, group, length]
    if mask is not None:
        scores.masked_fill_(~mask, float("-inf"))
    probs = torch.softmax(scores, dim=-1)
    return torch.matmul(probs, values.float()).reshape(rows, heads, dim).to(query.dtype)


def lane_attention(query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, bias: torch.Tensor,
                   scale: float) -> torch.Tensor:
    """`decode_attention` over float32 lanes (`_Lanes`): `query` `[lanes, heads, head_dim]` (any
    float dtype), `keys` and `values` `[lanes, kv_heads, length, head_dim]` in float32, `bias`
    `[lanes * kv_heads, 1, length]` (0 where a lane attends, -inf where not); float32
    `[lanes, heads, head_dim]` back.

    Scores, scale and mask in one `baddbmm`, then softmax and one `bmm`: measured on the 2-core
    development machine, 8 lanes of 100 positions (9 heads over 3 key/value heads) took 65 us a
    call against 129 us for `decode_attention` over bfloat16 lanes (which converts the keys to
    float32 at every call), 185 against 265 us at 400 positions; a decode step calls it once per
    layer.
    """
    lanes, heads, dim = query.shape
    kv_heads = keys.shape[1]
    grouped = query.float().reshape(lanes * kv_heads, heads // kv_heads, dim)
    scores = torch.baddbmm(bias, grouped, keys.flatten(0, 1).transpose(1, 2), alpha=scale)
    probs = torch.softmax(scores, dim=-1)
    return torch.bmm(probs, values.flatten(0, 1)).reshape(lanes, heads, dim)


def _capacity(tokens: int, limit: int) -> int:
    wanted = tokens + tokens // 8
    return min(limit, -(-wanted // CAPACITY_STEP) * CAPACITY_STEP)


@dataclass
class _Plan:
    slots: list[int]  # the slot of each segment of the packed row
    starts: list[int]  # cached tokens before each segment's new ones
    lengths: list[int]  # new tokens of each segment
    offsets: list[int]  # where each segment starts in the packed row
    # The decoding rows attended in one batch (`_DecodeBatch`), worked out at the step's first
    # `store` or attention call; None until then, False when fewer than two rows qualify.
    batch: _DecodeBatch | bool | None = None
    # Per segment and layer, where `store` writes its new keys and values (`_step_views`).
    destinations: tuple[list[tuple[torch.Tensor, ...]], list[tuple[torch.Tensor, ...]]] | None = None


@dataclass
class _Lanes:
    """The decoding rows' keys and values, side by side, kept from one step to the next.

    `buffer` is `[layers, 2, lanes, kv_heads, capacity, head_dim]`, in float32 where the model
    runs in bfloat16 or float16 (`lane_attention` reads it as it is; the rows' own values are
    exact in float32, so nothing is rounded twice): twice the bytes of those rows' positions, for
    rows of at most `GATHER_TOKENS` positions only. A decoding row holds a lane while it
    decodes, and its lane holds its row's first `lengths[lane]` positions. A step's new
    keys and values go into the lanes (one indexed write per layer and tensor) and into the rows
    (after the last layer), so the next step finds its rows already in place: only a row that is
    new to the lanes (or whose lane fell behind) is copied in. Gathering every row for every step
    cost a quarter of a decode step at 8 rows of 400 tokens (2 cores, bfloat16), in copies and
    page faults of a fresh buffer of up to 55 MB. Positions a lane has never held are zeros, not
    garbage: a NaN would survive the mask (0 x NaN).
    """

    buffer: torch.Tensor
    slots: list[int | None]  # the slot each lane holds
    lengths: list[int]  # positions each lane holds


@dataclass
class _DecodeBatch:
    """A step's leading one-token segments (its decoding rows), attended together over their
    lanes (`_Lanes`): attention runs over lanes `0..used-1` (a lane held by no row of this step
    attends to its own positions and is dropped). The rows' queries go to their lanes and the
    outputs come back in row order: no operation when the rows are the lanes in order, one
    gather each way when they are the lanes in another order (`row_of_lane`), and a scatter when
    some lane is held by no row of the step."""

    rows: int  # segments 0..rows-1
    keys: torch.Tensor  # [layers, used, kv_heads, longest, head_dim]: views of the lanes
    values: torch.Tensor
    mask: torch.Tensor  # [used, 1, 1, longest]: the positions each lane attends to
    bias: torch.Tensor | None  # the same as `lane_attention`'s additive bias, for reduced dtypes
    lanes: torch.Tensor  # [rows]: the lane of each row
    positions: torch.Tensor  # [rows]: where each row's new token goes
    in_order: bool  # rows 0..rows-1 are lanes 0..rows-1, and no other lane is attended
    row_of_lane: torch.Tensor | None  # [used]: when every lane attended is a row's, the row of each lane
    write_back: tuple[list[torch.Tensor], list[torch.Tensor]]  # the rows' new-token views, and the lanes'


class SlotKVCache:
    """Per-slot keys and values (see the module docstring).

    Storage takes its head shape, and its dtype unless `dtype` names it, from the model's own
    key states on the first forward (a compiled step hands attention float32 keys whatever the
    model's dtype: the engine names the model's); until then (and for rows not yet written)
    `reserve` only records the capacity a slot will need. A row never holds more than
    `max_capacity` tokens.
    """

    # transformers' mask and generation helpers read these from any cache object.
    is_compileable = False
    is_sliding = False

    def __init__(self, layers: int, slots: int, max_capacity: int, device: torch.device,
                 dtype: torch.dtype | None = None) -> None:
        self.layers = layers
        self.dtype = dtype
        self.slots = slots
        self.max_capacity = max_capacity
        self.device = device
        self.keys: list[torch.Tensor | None] = [None] * slots
        self.values: list[torch.Tensor | None] = [None] * slots
        self._wanted = [0] * slots  # capacity to allocate at a row's first write
        self._shape: tuple[int, int, torch.dtype] | None = None  # kv_heads, head_dim, dtype
        self._plan: _Plan | None = None
        self._lanes: _Lanes | None = None  # the decoding rows' lanes (`_Lanes`), while any decode
        self._lane_of: dict[int, int] = {}  # slot -> its lane

    @property
    def allocated_tokens(self) -> int:
        """Token positions held in memory, all rows together."""
        return sum(int(k.shape[2]) for k in self.keys if k is not None)

    def bytes_per_token(self) -> int:
        """Bytes one cached token takes across all layers (0 before the first forward)."""
        if self._shape is None:
            return 0
        heads, dim, dtype = self._shape
        return 2 * self.layers * heads * dim * torch.empty((), dtype=dtype).element_size()

    def release(self) -> None:
        """Free every row (after a failed step, whose writes may be half done)."""
        self.keys = [None] * self.slots
        self.values = [None] * self.slots
        self._wanted = [0] * self.slots
        self._plan = None
        self._lanes, self._lane_of = None, {}

    def free(self, slot: int) -> None:
        """The slot's sequence has left: give its memory back."""
        self.keys[slot] = self.values[slot] = None
        self._wanted[slot] = 0
        self._leave_lane(slot)

    def _leave_lane(self, slot: int) -> None:
        """`slot`'s row changes other than by decoding (or is gone): its lane no longer mirrors
        it. The lanes are given back when no slot holds one."""
        lane = self._lane_of.pop(slot, None)
        if lane is not None and self._lanes is not None:
            self._lanes.slots[lane] = None
            self._lanes.lengths[lane] = 0
        if not self._lane_of:
            self._lanes = None

    def detach(self, slot: int) -> KVRow | None:
        """Take slot `slot`'s row out of the cache, uncopied, and free the slot: a preempted
        sequence keeps its keys and values while it waits (`attach` puts them back)."""
        keys, values = self.keys[slot], self.values[slot]
        self.free(slot)
        return None if keys is None or values is None else (keys, values)

    def attach(self, slot: int, row: KVRow) -> None:
        """Give the free slot `slot` a row taken out by `detach` (no copy)."""
        self.keys[slot], self.values[slot] = row
        self._wanted[slot] = 0
        self._leave_lane(slot)

    def holds(self, slot: int, tokens: int) -> bool:
        """Whether `slot` has room for `tokens` positions."""
        keys = self.keys[slot]
        return max(self._wanted[slot], int(keys.shape[2]) if keys is not None else 0) >= tokens

    def reserve(self, slot: int, tokens: int) -> None:
        """Make room for `tokens` positions in `slot` now (a prompt's row is allocated once when
        its prefill starts, not regrown slice after slice)."""
        self._ensure(slot, tokens)

    # ----- planning the next forward -----

    def plan(self, slots: list[int], starts: list[int], chunks: list[list[int]]) -> dict[str, Any]:
        """The next forward: the tokens `chunks[i]` go after `starts[i]` cached tokens of
        `slots[i]`, all packed into one row; return the model inputs (ids, positions, and
        this cache to attend with)."""
        lengths = [len(c) for c in chunks]
        for slot, start, n in zip(slots, starts, lengths):
            self._ensure(slot, start + n)
            if n != 1 and slot in self._lane_of:  # a prompt written into a row a lane mirrored
                self._leave_lane(slot)
        offsets = [0]
        for n in lengths[:-1]:
            offsets.append(offsets[-1] + n)
        self._plan = _Plan(slots, starts, lengths, offsets)
        ids = [t for c in chunks for t in c]
        positions = [p for start, n in zip(starts, lengths) for p in range(start, start + n)]
        return {"input_ids": torch.tensor([ids], dtype=torch.long, device=self.device),
                "position_ids": torch.tensor([positions], dtype=torch.long, device=self.device),
                # A 4-D mask passes through transformers' mask builders untouched; `attend`
                # does not read it (each segment attends to exactly its own positions).
                "attention_mask": torch.ones((1, 1, 1, 1), dtype=torch.bool, device=self.device),
                "slot_cache": self}

    def _ensure(self, slot: int, tokens: int) -> None:
        if tokens > self.max_capacity:
            raise ValueError(f"a sequence needs {tokens} cached tokens; the cache holds at most {self.max_capacity}")
        keys = self.keys[slot]
        if keys is None:
            if tokens > self._wanted[slot]:
                self._wanted[slot] = _capacity(tokens, self.max_capacity)
            if self._shape is not None and self._wanted[slot]:
                self._allocate(slot, self._wanted[slot], 0)
            return
        if tokens > keys.shape[2]:
            self._allocate(slot, _capacity(tokens, self.max_capacity), int(keys.shape[2]))

    def _allocate(self, slot: int, capacity: int, keep: int) -> None:
        """Give `slot` rows of `capacity` positions, its first `keep` cached ones copied over.
        The rest stays uninitialised: `attend` reads only written positions."""
        assert self._shape is not None
        heads, dim, dtype = self._shape
        shape = (self.layers, heads, capacity, dim)
        for store in (self.keys, self.values):
            new = torch.empty(shape, dtype=dtype, device=self.device)
            old = store[slot]
            if old is not None and keep:
                new[:, :, :keep] = old[:, :, :keep]
            store[slot] = new
        self._wanted[slot] = 0

    def _learn_shape(self, heads: int, dim: int, dtype: torch.dtype) -> None:
        self._shape = (heads, dim, self.dtype or dtype)
        for slot, wanted in enumerate(self._wanted):
            if wanted and self.keys[slot] is None:
                self._allocate(slot, wanted, 0)

    # ----- called by the model's attention layers -----

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, layer_idx: int,
               *args: Any, **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """Write this step's keys and values (`[1, kv_heads, tokens, head_dim]`) into their rows."""
        plan = self._plan
        if plan is None:
            raise RuntimeError("SlotKVCache.update called without a planned step")
        if self._shape is None:
            self._learn_shape(int(key_states.shape[1]), int(key_states.shape[3]), key_states.dtype)
        for slot, start, n, off in zip(plan.slots, plan.starts, plan.lengths, plan.offsets):
            keys, values = self.keys[slot], self.values[slot]
            assert keys is not None and values is not None
            keys[layer_idx, :, start : start + n] = key_states[0, :, off : off + n]
            values[layer_idx, :, start : start + n] = value_states[0, :, off : off + n]
        return key_states, value_states

    def attend(self, layer_idx: int, query: torch.Tensor, scaling: float | None) -> torch.Tensor:
        """Each segment's queries (`[1, heads, tokens, head_dim]`) against its own row's cached
        positions, causally; `[1, tokens, heads, head_dim]` as transformers' SDPA attention
        returns it."""
        plan = self._plan
        assert plan is not None
        heads = query.shape[1]
        out = torch.empty_like(query)
        for slot, start, n, off in zip(plan.slots, plan.starts, plan.lengths, plan.offsets):
            keys, values = self.keys[slot], self.values[slot]
            assert keys is not None and values is not None
            total = start + n
            k = keys[layer_idx, :, :total].unsqueeze(0)
            v = values[layer_idx, :, :total].unsqueeze(0)
            # The segment's n queries are its row's last n positions: query j sees 0..start+j.
            mask = None if n == 1 else torch.ones((n, total), dtype=torch.bool, device=query.device).tril(start)
            out[:, :, off : off + n] = F.scaled_dot_product_attention(
                query[:, :, off : off + n], k, v, attn_mask=mask, scale=scaling, enable_gqa=heads != k.shape[1])
        return out.transpose(1, 2)

    # ----- called by the engine's own forward (llama_forward) -----

    def store(self, layer_idx: int, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        """`update` for a forward that keeps the packed row's tokens first: keys and values
        `[tokens, kv_heads, head_dim]`, written in place: the decoding rows' into the step's
        decode batch (`_DecodeBatch`), every other segment's into its row, all of them in one
        copy per tensor (the destinations are views made once per step, `_step_views`)."""
        plan = self._plan
        if plan is None:
            raise RuntimeError("SlotKVCache.store called without a planned step")
        if self._shape is None:
            self._learn_shape(int(key_states.shape[1]), int(key_states.shape[2]), key_states.dtype)
        batch = self._decode_batch(key_states.device)
        first = 0
        if batch is not None:
            first = batch.rows
            batch.keys[layer_idx, batch.lanes, :, batch.positions] = key_states[:first].to(batch.keys.dtype)
            batch.values[layer_idx, batch.lanes, :, batch.positions] = value_states[:first].to(batch.values.dtype)
            if first == len(plan.lengths):
                return
        keys, values = self._step_views()
        lengths = plan.lengths[first:]
        torch._foreach_copy_([row[layer_idx] for row in keys[first:]],
                             list(key_states[first:].transpose(0, 1).split_with_sizes(lengths, 1)))
        torch._foreach_copy_([row[layer_idx] for row in values[first:]],
                             list(value_states[first:].transpose(0, 1).split_with_sizes(lengths, 1)))

    def _step_views(self) -> tuple[list[tuple[torch.Tensor, ...]], list[tuple[torch.Tensor, ...]]]:
        """Per segment, per layer, where its new keys and values go (`[kv_heads, tokens,
        head_dim]` views of its row), made at the step's first layer: a view per layer and
        segment would otherwise be taken at every layer."""
        plan = self._plan
        assert plan is not None
        if plan.destinations is None:
            keys, values = [], []
            for slot, start, n in zip(plan.slots, plan.starts, plan.lengths):
                keys_row, values_row = self.keys[slot], self.values[slot]
                assert keys_row is not None and values_row is not None
                keys.append(keys_row[:, :, start : start + n].unbind(0))
                values.append(values_row[:, :, start : start + n].unbind(0))
            plan.destinations = (keys, values)
        return plan.destinations

    def attend_packed(self, layer_idx: int, query: torch.Tensor, scaling: float) -> torch.Tensor:
        """`attend` for queries `[tokens, heads, head_dim]`, after `store` of the same layer; the
        same layout back.

        The step's decoding rows of up to `GATHER_TOKENS` cached tokens attend together in one
        call over their lanes (`_Lanes`, `_DecodeBatch`), which saves an attention call per row,
        whose fixed cost on a CPU (about 140 us each on two busy cores, 8 rows x 30 layers a
        step) exceeds what it computes. Prompt slices and longer rows attend one by one. Attention
        over float32 lanes is float32: the compiled decode graph passes float32 queries, so that
        nothing is converted outside its own loops.
        """
        plan = self._plan
        assert plan is not None
        heads = query.shape[1]
        batch = self._decode_batch(query.device)
        first = 0
        if batch is not None:
            first = batch.rows  # the decoding rows lead the packed row, one token each
            attended = self._attend_lanes(batch, layer_idx, query[:first], scaling)
            if layer_idx == self.layers - 1:  # every layer stored: the new tokens go into their rows
                torch._foreach_copy_(*batch.write_back)
            if first == query.shape[0]:  # a decode step: nothing else attends
                return attended.to(query.dtype)
        out = torch.empty_like(query)
        if batch is not None:
            out[:first] = attended
        queries = query.transpose(0, 1)[None]  # [1, heads, tokens, head_dim], a view
        segments = zip(plan.slots, plan.starts, plan.lengths, plan.offsets, strict=True)
        for slot, start, n, off in itertools.islice(segments, first, None):
            keys_row, values_row = self.keys[slot], self.values[slot]
            assert keys_row is not None and values_row is not None
            total = start + n
            if n == 1 and keys_row.dtype in REDUCED_DTYPES:
                out[off : off + 1] = decode_attention(query[off : off + 1], keys_row[layer_idx, None, :, :total],
                                                      values_row[layer_idx, None, :, :total], None, scaling)
                continue
            segment_mask = None if n == 1 else torch.ones((n, total), dtype=torch.bool, device=query.device).tril(start)
            attended = F.scaled_dot_product_attention(
                queries[:, :, off : off + n].to(keys_row.dtype), keys_row[layer_idx, None, :, :total],
                values_row[layer_idx, None, :, :total], attn_mask=segment_mask, scale=scaling,
                enable_gqa=heads != keys_row.shape[1])
            out[off : off + n] = attended[0].transpose(0, 1)
        return out

    @staticmethod
    def _attend_lanes(batch: _DecodeBatch, layer_idx: int, query: torch.Tensor, scaling: float) -> torch.Tensor:
        """The decoding rows' queries `[rows, heads, head_dim]` against their lanes; in row order."""
        keys, values = batch.keys[layer_idx], batch.values[layer_idx]
        if batch.in_order:
            lane_queries = query
        elif batch.row_of_lane is not None:
            lane_queries = query.index_select(0, batch.row_of_lane)
        else:
            lane_queries = query.new_zeros((keys.shape[0], *query.shape[1:]))
            lane_queries[batch.lanes] = query
        if batch.bias is not None:
            attended = lane_attention(lane_queries, keys, values, batch.bias, scaling)
        else:
            attended = F.scaled_dot_product_attention(lane_queries[:, :, None], keys, values, attn_mask=batch.mask,
                                                      scale=scaling, enable_gqa=query.shape[1] != keys.shape[1])[:, :, 0]
        return attended if batch.in_order else attended.index_select(0, batch.lanes)

    def _decode_batch(self, device: torch.device) -> _DecodeBatch | None:
        """The step's decode batch (see `_DecodeBatch`), made at its first call in the step; None
        when fewer than two segments qualify. Only the leading run of one-token segments of at
        most `GATHER_TOKENS` positions qualifies (the engine puts its decoding rows first), so
        their queries and outputs are the packed row's first positions."""
        plan = self._plan
        assert plan is not None and self._shape is not None
        if plan.batch is None:
            plan.batch = self._make_decode_batch(plan, device) or False
        return plan.batch if isinstance(plan.batch, _DecodeBatch) else None

    def _make_decode_batch(self, plan: _Plan, device: torch.device) -> _DecodeBatch | None:
        assert self._shape is not None
        rows = 0
        for i, (start, n, off) in enumerate(zip(plan.starts, plan.lengths, plan.offsets)):
            if n != 1 or off != i or start + 1 > GATHER_TOKENS:
                break
            rows += 1
        if rows < 2:
            return None
        slots, starts = plan.slots[:rows], plan.starts[:rows]
        lanes = self._lanes_for(rows, max(starts) + 1, device)
        stepping = set(slots)
        spare = [lane for lane, slot in enumerate(lanes.slots) if slot is None]
        spare += [lane for lane, slot in enumerate(lanes.slots) if slot is not None and slot not in stepping]
        row_lanes, sources, targets, news, lanes_new = [], [], [], [], []
        for slot, start in zip(slots, starts):
            lane = self._lane_of.get(slot)
            keys_row, values_row = self.keys[slot], self.values[slot]
            assert keys_row is not None and values_row is not None
            if lane is None or lanes.lengths[lane] != start:  # new to the lanes, or its lane fell behind
                if lane is None:
                    lane = spare.pop(0)
                    held = lanes.slots[lane]
                    if held is not None:  # a row that sits this step out gives its lane up
                        del self._lane_of[held]
                    lanes.slots[lane] = slot
                    self._lane_of[slot] = lane
                if start:
                    sources += [keys_row[:, :, :start], values_row[:, :, :start]]
                    targets += [lanes.buffer[:, 0, lane, :, :start], lanes.buffer[:, 1, lane, :, :start]]
            lanes.lengths[lane] = start + 1  # with this step's token, written by every layer
            row_lanes.append(lane)
            news += [keys_row[:, :, start], values_row[:, :, start]]
            lanes_new += [lanes.buffer[:, 0, lane, :, start], lanes.buffer[:, 1, lane, :, start]]
        if sources:
            torch._foreach_copy_(targets, sources)
        used = max(row_lanes) + 1
        longest = max(lanes.lengths[:used])
        in_order = row_lanes == list(range(rows)) and used == rows
        row_of_lane = None
        if not in_order and used == rows:  # the rows hold every lane attended, in another order
            order = [0] * rows
            for row, lane in enumerate(row_lanes):
                order[lane] = row
            row_of_lane = torch.tensor(order, device=device)
        # A lane no row of this step holds attends to at least its first position (finite), and is dropped.
        lengths = torch.tensor([max(1, n) for n in lanes.lengths[:used]], device=device)
        mask = (torch.arange(longest, device=device)[None, :] < lengths[:, None])[:, None, None]
        bias = None
        if self._shape[2] in REDUCED_DTYPES:
            kv_heads = self._shape[0]
            bias = torch.zeros(mask.shape, device=device).masked_fill_(~mask, float("-inf"))
            bias = bias.expand(used, kv_heads, 1, longest).reshape(used * kv_heads, 1, longest)
        view = lanes.buffer[:, :, :used, :, :longest]
        return _DecodeBatch(rows, view[:, 0], view[:, 1], mask, bias, torch.tensor(row_lanes, device=device),
                            torch.tensor(starts, device=device), in_order, row_of_lane, (news, lanes_new))

    def _lanes_for(self, rows: int, longest: int, device: torch.device) -> _Lanes:
        """The lanes, with room for `rows` rows of `longest` positions: grown (an eighth more
        positions than asked, in steps of 16, and the lanes' content kept) where they fall short."""
        assert self._shape is not None
        lanes = self._lanes
        if lanes is not None and len(lanes.slots) >= rows and lanes.buffer.shape[4] >= longest:
            return lanes
        heads, dim, dtype = self._shape
        if dtype in REDUCED_DTYPES:
            dtype = torch.float32
        count = max(rows, len(lanes.slots) if lanes is not None else 0)
        capacity = max(_capacity(longest, GATHER_TOKENS), int(lanes.buffer.shape[4]) if lanes is not None else 0)
        buffer = torch.zeros((self.layers, 2, count, heads, capacity, dim), dtype=dtype, device=device)
        if lanes is None:
            lanes = _Lanes(buffer, [None] * count, [0] * count)
        else:
            old = lanes.buffer
            buffer[:, :, : old.shape[2], :, : old.shape[4]] = old
            pad = count - len(lanes.slots)
            lanes = _Lanes(buffer, lanes.slots + [None] * pad, lanes.lengths + [0] * pad)
        self._lanes = lanes
        return lanes

    def get_seq_length(self, layer_idx: int = 0) -> int:
        plan = self._plan
        return max(s + n for s, n in zip(plan.starts, plan.lengths)) if plan is not None else 0

    # ----- moving rows -----

    def read(self, slot: int, length: int) -> PrefixKV:
        """Slot `slot`'s first `length` keys and values, as views of its row, not copies: a
        row's first positions never change while its sequence lives (decoding writes after
        them), a row is never handed to another sequence, and when it grows the old tensor
        stays whole for whoever still holds a view. Copying a 2,000-token prompt's rows took
        about 30 ms on two cores, a stall of every decoding sequence's next token."""
        keys, values = self.keys[slot], self.values[slot]
        assert keys is not None and values is not None
        return keys[:, :, :length], values[:, :, :length]

    def write(self, slot: int, kv: PrefixKV, length: int) -> None:
        """Copy the first `length` tokens of `kv` (from `read`) into slot `slot`."""
        cached_keys, cached_values = kv
        if self._shape is None:
            self._learn_shape(int(cached_keys.shape[1]), int(cached_keys.shape[3]), cached_keys.dtype)
        self._ensure(slot, length + 1)
        self._leave_lane(slot)
        keys, values = self.keys[slot], self.values[slot]
        assert keys is not None and values is not None
        keys[:, :, :length] = cached_keys[:, :, :length]
        values[:, :, :length] = cached_values[:, :, :length]
