"""KV cache batch helpers: merged and trimmed batches decode like separate rows."""

from __future__ import annotations

import torch
from transformers import DynamicCache

from reference_server.inference.engine.kvcache import PaddedBatch, left_padded, positions_from_mask
from reference_server.inference.loading import LoadedModel


def test_merged_and_trimmed_batch_decodes_like_separate_rows(
    generator: LoadedModel, prompts: list[list[int]]
) -> None:
    model = generator.model

    def prefill(rows: list[list[int]]) -> PaddedBatch:
        ids, mask = left_padded(rows, 0, "cpu")
        cache = DynamicCache(config=model.config)
        out = model(
            input_ids=ids,
            attention_mask=mask,
            position_ids=positions_from_mask(mask),
            cache=cache,
            use_cache=True,
        )
        return PaddedBatch(cache, mask, mask.sum(1), out.logits[:, -1].argmax(-1))

    def step(batch: PaddedBatch) -> torch.Tensor:
        inputs = batch.step_inputs()
        logits: torch.Tensor = model(**inputs, cache=batch.cache, use_cache=True).logits[:, -1]
        batch.advance(inputs["attention_mask"], logits.argmax(-1))
        return logits

    short, long = prompts[4], prompts[3]
    with torch.inference_mode():
        a = prefill([short])
        b = prefill([long])
        ref_a, ref_b = step(a), step(b)

        merged = prefill([short])
        other = prefill([long])
        merged.merge(other)
        assert merged.mask.shape == (2, len(long)) and merged.mask[0].sum() == len(short)
        both = step(merged)
        torch.testing.assert_close(both[0], ref_a[0], atol=2e-4, rtol=0)
        torch.testing.assert_close(both[1], ref_b[0], atol=2e-4, rtol=0)

        merged.keep([0])  # the long row leaves: its padding-only columns go too
        assert merged.mask.shape == (1, len(short) + 1) and bool(merged.mask.all())
        ref_next = step(a)
        torch.testing.assert_close(step(merged)[0], ref_next[0], atol=2e-4, rtol=0)


