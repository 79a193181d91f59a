"""The slot KV cache and the prefix cache: rows of any length decode together exactly like
whole-text forwards, hold memory for their own lengths only, and cached prefixes stay bounded
and least-recently-used."""

from __future__ import annotations

import torch

from reference_server.inference.engine.kvcache import SlotKVCache, install
from reference_server.inference.engine.prefix_cache import PrefixCache
from reference_server.inference.loading import LoadedModel
from tests.constants import LOGITS_ATOL


def test_slot_cache_decodes_rows_of_any_length_like_separate_rows(
    generator: LoadedModel, prompts: list[list[int]]
) -> None:
    """Rows of different lengths decode together, each over its own positions, prefilled in
    slices or whole, in any slot; swapping slots moves their rows; freeing gives memory back."""
    model = generator.model
    layers = model.config.num_hidden_layers
    install(model)

    def prefill(cache: SlotKVCache, slot: int, ids: list[int], chunk: int) -> torch.Tensor:
        for start in range(0, len(ids), chunk):
            inputs = cache.plan_prefill([slot], [start], [ids[start : start + chunk]], 0)
            logits: torch.Tensor = model(**inputs, cache=cache, use_cache=True, logits_to_keep=1).logits[:, -1]
        return logits[0]

    def decode(cache: SlotKVCache, lengths: list[int], tokens: list[int]) -> torch.Tensor:
        inputs = cache.plan_decode(lengths)
        out: torch.Tensor = model(input_ids=torch.tensor([[t] for t in tokens], device=generator.device), **inputs, cache=cache,
                                  use_cache=True, logits_to_keep=1).logits[:, -1]
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
        a = prefill(cache, 2, short, 5)  # in slices of 5 tokens, into slot 2
        b = prefill(cache, 0, long, len(long))
        torch.testing.assert_close(a, alone[0][0], atol=LOGITS_ATOL, rtol=0)
        torch.testing.assert_close(b, alone[1][0], atol=LOGITS_ATOL, rtol=0)
        cache.swap(2, 1)  # rows decode from slots 0..n-1
        both = decode(cache, [len(long), len(short)], [int(b.argmax()), int(a.argmax())])
        torch.testing.assert_close(both[0], alone[1][1], atol=LOGITS_ATOL, rtol=0)
        torch.testing.assert_close(both[1], alone[0][1], atol=LOGITS_ATOL, rtol=0)
        # Each row holds about its own length (an eighth more, in steps of 16), not the longest's.
        live = len(short) + 1 + len(long) + 1
        assert live <= cache.allocated_tokens <= live * 1.125 + 2 * 16
        cache.free(0)
        assert cache.allocated_tokens < (len(short) + 1) * 1.125 + 16


def test_prefix_cache_is_bounded_and_least_recently_used() -> None:
    kv = torch.zeros(2, 2, 1, 40, 4)  # 2 layers, 40 tokens: 2,560 bytes
    cache = PrefixCache(max_bytes=6_000, min_tokens=4)
    a, b = list(range(40)), list(range(100, 140))
    cache.insert(a, kv)
    cache.insert(b, kv)
    assert cache.lookup(a[:10] + [999] * 5) == (10, cache.lookup(a[:10] + [999])[1])
    assert cache.lookup([7, 8, 9, 10, 11])[0] == 0  # nothing in common
    assert cache.lookup(a[:3] + [999])[0] == 0  # below min_tokens
    assert cache.lookup(a)[0] == 39  # the last prompt token is always prefilled
    assert not cache.wants(a[:20]) and cache.wants(a + [1])
    cache.insert(list(range(200, 240)), kv)  # over 6,000 bytes: b, the least recently used, goes
    assert len(cache) == 2 and cache.bytes == 2 * 2560
    assert cache.lookup(b)[0] == 0 and cache.lookup(a)[0] == 39
    cache.insert(a + [1, 2], torch.zeros(2, 2, 1, 42, 4))  # extends a: replaces it
    assert len(cache) == 2 and cache.lookup(a + [1, 2, 3])[0] == 42
    assert PrefixCache(max_bytes=0).lookup(a) == (0, None)

