"""The slot KV cache and the prefix cache: rows of any length decode together exactly like
whole-text forwards, hold memory for their own lengths only, and cached prefixes stay bounded
and least-recently-used."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest
import torch

from reference_server.inference.engine.kvcache import SlotKVCache, decode_attention, install, lane_attention
from reference_server.inference.engine.prefix_cache import PrefixCache
from reference_server.inference.loading import LoadedModel
from tests.constants import LOGITS_ATOL


def test_slot_cache_decodes_rows_of_any_length_like_separate_rows(
    generator: LoadedModel, prompts: list[list[int]]
) -> None:
    """Rows of different lengths, in any slots, prefilled whole or in slices, packed side by
    side with other rows' tokens, decode like whole-text forwards; freeing gives memory back."""
    model = generator.model
    layers = model.config.num_hidden_layers
    install(model)

    def forward(cache: SlotKVCache, slots: list[int], starts: list[int], chunks: list[list[int]]) -> torch.Tensor:
        """Logits at each chunk's last token."""
        inputs = cache.plan(slots, starts, chunks)
        last = torch.tensor(list(itertools.accumulate(len(c) for c in chunks))) - 1
        out: torch.Tensor = model(**inputs, cache=cache, use_cache=True, logits_to_keep=last).logits[0]
        return out

    short, long = prompts[4], prompts[3]
    with torch.inference_mode():
        # The reference: plain forwards over the whole text, no cache at all.
        alone = []
        for ids in (short, long):
            first = model(input_ids=torch.tensor([ids], device=generator.device)).logits[0, -1]
            ids = [*ids, int(first.argmax())]
            alone.append((first, model(input_ids=torch.tensor([ids], device=generator.device)).logits[0, -1]))

        cache = SlotKVCache(layers, 4, 512, torch.device(generator.device))
        b = forward(cache, [1], [0], [long[:-5]])[0]  # most of the long prompt, into slot 1
        # One packed forward: the long prompt's last 5 tokens beside the short one's first 5.
        b, a = forward(cache, [1, 2], [len(long) - 5, 0], [long[-5:], short[:5]])
        for start in range(5, len(short), 5):  # the rest of the short prompt in slices of 5
            a = forward(cache, [2], [start], [short[start : start + 5]])[0]
        torch.testing.assert_close(a, alone[0][0], atol=LOGITS_ATOL, rtol=0)
        torch.testing.assert_close(b, alone[1][0], atol=LOGITS_ATOL, rtol=0)
        # Both decode together, in either order.
        both = forward(cache, [2, 1], [len(short), len(long)], [[int(a.argmax())], [int(b.argmax())]])
        torch.testing.assert_close(both[0], alone[0][1], atol=LOGITS_ATOL, rtol=0)
        torch.testing.assert_close(both[1], alone[1][1], atol=LOGITS_ATOL, rtol=0)
        # Each row holds about its own length (an eighth more, in steps of 16), not the longest's.
        live = len(short) + 1 + len(long) + 1
        assert live <= cache.allocated_tokens <= live * 1.125 + 2 * 16
        cache.free(1)
        assert cache.allocated_tokens < (len(short) + 1) * 1.125 + 16


def test_prefix_cache_is_bounded_and_least_recently_used() -> None:
    kv = (torch.zeros(2, 1, 40, 4), torch.zeros(2, 1, 40, 4))  # 2 layers, 40 tokens: 2,560 bytes
    cache = PrefixCache(max_bytes=6_000, min_tokens=4)
    a, b = list(range(40)), list(range(100, 140))
    cache.insert(a, kv)
    cache.insert(b, kv)
    assert cache.lookup(a[:10] + [999] * 5) == (10, cache.lookup(a[:10] + [999])[1])
    assert cache.lookup([7, 8, 9, 10, 11])[0] == 0  # nothing in common
    assert cache.lookup(a[:3] + [999])[0] == 0  # below min_tokens
    assert cache.lookup(a)[0] == 38  # the last two prompt tokens are always prefilled
    assert not cache.wants(a[:20]) and cache.wants(a + [1])
    cache.insert(list(range(200, 240)), kv)  # over 6,000 bytes: b, the least recently used, goes
    assert len(cache) == 2 and cache.bytes == 2 * 2560
    assert cache.lookup(b)[0] == 0 and cache.lookup(a)[0] == 38
    cache.insert(a + [1, 2], (torch.zeros(2, 1, 42, 4), torch.zeros(2, 1, 42, 4)))  # extends a: replaces it
    assert len(cache) == 2 and cache.lookup(a + [1, 2, 3, 4])[0] == 42
    assert PrefixCache(max_bytes=0).lookup(a) == (0, None)



def test_a_stored_prefix_is_views_of_its_row_that_outlive_the_row() -> None:
    """Storing a prompt copies nothing; the stored keys and values stay those of the prompt
    while its sequence decodes on, its row grows and is freed; the prefix cache counts the
    whole row the views keep alive."""
    layers, heads, dim = 2, 1, 4
    cache = SlotKVCache(layers, 2, 4096, torch.device("cpu"))
    prompt = 40
    cache.plan([0], [0], [list(range(prompt))])
    written = torch.randn(1, heads, prompt, dim)
    for layer in range(layers):
        cache.update(written, -written, layer)
    keys, values = cache.read(0, prompt)
    assert keys.data_ptr() == cache.keys[0].data_ptr()  # a view, not a copy
    stored = PrefixCache(max_bytes=2**20, min_tokens=4)
    stored.insert(list(range(prompt)), (keys, values))
    row_bytes = 2 * cache.keys[0].untyped_storage().nbytes()
    assert stored.bytes == row_bytes > 2 * keys.numel() * keys.element_size()
    for position in range(prompt, prompt + 100):  # decoding on: the row grows several times
        cache.plan([0], [position], [[1]])
        for layer in range(layers):
            cache.update(torch.full((1, heads, 1, dim), 7.0), torch.full((1, heads, 1, dim), 7.0), layer)
    assert cache.keys[0].data_ptr() != keys.data_ptr()  # the row moved on
    cache.free(0)
    hit, kv = stored.lookup(list(range(prompt)) + [5, 6])
    assert hit == prompt and kv is not None
    for layer in range(layers):
        torch.testing.assert_close(kv[0][layer], written[0])
        torch.testing.assert_close(kv[1][layer], -written[0])
    cache.write(1, kv, hit)  # a new prompt starts from it: a copy into its own row
    torch.testing.assert_close(cache.keys[1][:, :, :prompt], kv[0])


def test_decode_attention_in_reduced_precision_is_sdpa_over_each_rows_own_positions() -> None:
    """One query per row, rows of different lengths padded into one batch, grouped heads: what
    SDPA computes in float32 over the same bfloat16 (and float16) inputs, within their rounding."""
    torch.manual_seed(0)
    rows, heads, kv_heads, longest, dim = 4, 9, 3, 37, 64
    lengths = torch.tensor([37, 5, 20, 1])
    mask = (torch.arange(longest)[None] < lengths[:, None])[:, None, None]
    for dtype in (torch.bfloat16, torch.float16):
        query = torch.randn(rows, heads, dim).to(dtype)
        keys, values = (torch.randn(rows, kv_heads, longest, dim).to(dtype) for _ in range(2))
        values[~mask[:, 0, 0][:, None].expand(rows, kv_heads, longest)] = 1e4  # padding never counts
        expected = torch.nn.functional.scaled_dot_product_attention(
            query.float()[:, :, None], keys.float(), values.float(), attn_mask=mask, scale=0.125,
            enable_gqa=True)[:, :, 0]
        got = decode_attention(query, keys, values, mask, 0.125)
        assert got.dtype == dtype and got.shape == (rows, heads, dim)
        assert float((got.float() - expected).abs().max()) < 2e-2, dtype
        # The same over float32 lanes, the mask as an additive bias per lane and key/value head.
        bias = torch.zeros(mask.shape).masked_fill_(~mask, float("-inf")).expand(rows, kv_heads, 1, longest)
        lanes = lane_attention(query, keys.float(), values.float(), bias.reshape(rows * kv_heads, 1, longest), 0.125)
        assert lanes.dtype == torch.float32 and lanes.shape == (rows, heads, dim)
        assert float((lanes - expected).abs().max()) < 1e-4, dtype


@pytest.mark.parametrize(("dtype", "atol"), [("float32", 2e-4), ("bfloat16", 1.0)])
def test_decoding_rows_keep_their_lanes_as_rows_join_leave_sit_out_and_reorder(
    generator_in: Callable[[str], LoadedModel], prompts: list[list[int]], dtype: str, atol: float
) -> None:
    """Decoding rows attend together over lanes kept from step to step (`_Lanes`): whatever the
    steps' mix (rows joining, leaving, sitting a step out, coming back in another order, a freed
    slot taken by a new prompt), each row's logits are those of the same row decoded alone (in
    bfloat16, within what another batch shape's rounding moves them), and a row that stays keeps
    its lane (it is not copied in again)."""
    from reference_server.inference.engine import llama_forward

    loaded = generator_in(dtype)
    forward = llama_forward.build(loaded.model)
    assert forward is not None
    layers = loaded.model.config.num_hidden_layers
    device = torch.device(loaded.device)
    batched, single = (SlotKVCache(layers, 4, 512, device) for _ in range(2))
    tokens: dict[int, int] = {}  # slot -> its next token
    starts: dict[int, int] = {}  # slot -> its cached tokens

    def run(cache: SlotKVCache, slots: list[int], chunks: list[list[int]]) -> torch.Tensor:
        inputs = cache.plan(slots, [starts[s] for s in slots], chunks)
        keep = torch.tensor(list(itertools.accumulate(len(c) for c in chunks))) - 1
        return forward(inputs["input_ids"][0], inputs["position_ids"][0], cache, keep)

    def prefill(slot: int, prompt: list[int]) -> None:
        starts[slot] = 0
        for cache in (batched, single):
            logits = run(cache, [slot], [prompt])
        tokens[slot], starts[slot] = int(logits[0].argmax()), len(prompt)

    def decode(slots: list[int]) -> None:
        together = run(batched, slots, [[tokens[s]] for s in slots])
        for i, slot in enumerate(slots):
            alone = run(single, [slot], [[tokens[slot]]])[0]  # one row: attends on its own
            torch.testing.assert_close(together[i], alone, atol=atol, rtol=0)
        for i, slot in enumerate(slots):
            tokens[slot], starts[slot] = int(together[i].argmax()), starts[slot] + 1

    with torch.inference_mode():
        for slot in range(3):
            prefill(slot, prompts[slot])
        decode([0, 1, 2])
        lanes = dict(batched._lane_of)
        assert sorted(lanes) == [0, 1, 2]
        decode([0, 1, 2])
        decode([1, 2])  # slot 0 sits a step out
        decode([2, 0, 1])  # back, in another order
        assert batched._lane_of == lanes, "rows that stayed kept their lanes"
        batched.free(1)
        single.free(1)
        assert 1 not in batched._lane_of
        prefill(1, prompts[3])  # a new prompt in the freed slot
        decode([0, 1, 2])
        decode([2, 1])
        prefill(3, prompts[4])
        decode([3, 0, 2, 1])
        for slot in range(4):
            batched.free(slot)
        assert batched._lanes is None, "the lanes are given back with the last decoding row"


def test_rows_keep_the_dtype_the_cache_is_given_whatever_the_keys_it_is_handed() -> None:
    """A compiled step hands attention float32 keys and values; a bfloat16 model's rows stay
    bfloat16 (half the memory), and an eager step after it attends over them as before."""
    layers, heads, dim = 2, 3, 8
    cache = SlotKVCache(layers, 2, 64, torch.device("cpu"), torch.bfloat16)
    cache.plan([0, 1], [0, 0], [[1], [2]])
    for layer in range(layers):
        cache.store(layer, torch.randn(2, heads, dim), torch.randn(2, heads, dim))
        compiled = cache.attend_packed(layer, torch.randn(2, 3 * heads, dim), 0.125)
        assert compiled.dtype == torch.float32
    assert cache.keys[0] is not None and cache.keys[0].dtype == torch.bfloat16
    cache.plan([0, 1], [1, 1], [[3], [4]])  # an eager step: bfloat16 queries, keys and values
    for layer in range(layers):
        cache.store(layer, torch.randn(2, heads, dim).bfloat16(), torch.randn(2, heads, dim).bfloat16())
        eager = cache.attend_packed(layer, torch.randn(2, 3 * heads, dim).bfloat16(), 0.125)
        assert eager.dtype == torch.bfloat16 and bool(eager.isfinite().all())
