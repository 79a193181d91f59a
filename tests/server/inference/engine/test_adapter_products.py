"""Adapter products of a reduced-precision model on CPU are computed in float32: a bfloat16
matmul there runs in oneDNN, which builds and keeps a kernel for every shape it meets, and the
shapes of adapter products change with every step (memory that stayed behind as adapters came
and went; see `lora`'s module docstring)."""

from __future__ import annotations

import torch

from reference_server.inference.engine.lora import Adapter, AdapterBatch, AdapterSet, batch_for_tokens

IN, OUT, RANK = 32, 24, 4


def _adapter(name: str, dtype: torch.dtype, seed: int) -> Adapter:
    generator = torch.Generator().manual_seed(seed)
    a = torch.randn(RANK, IN, generator=generator).to(dtype)
    b = torch.randn(OUT, RANK, generator=generator).to(dtype)
    return Adapter(name=name, rank=RANK, weights={"proj": (a, b)})


def test_bfloat16_adapters_are_applied_in_float32_on_cpu() -> None:
    adapters = [_adapter("one", torch.bfloat16, 0), _adapter("two", torch.bfloat16, 1)]
    _, batch = batch_for_tokens(None, [(adapters[0], 3), (None, 2), (adapters[1], 1)], torch.device("cpu"))
    assert batch is not None
    cat = batch.adapters.concatenated("proj")
    assert cat is not None
    a_cat, b_cat, owner = cat
    assert a_cat.dtype == b_cat.dtype == torch.float32
    assert a_cat.is_contiguous() and b_cat.is_contiguous()
    # The same values as the resident (bfloat16) adapters, which keep the model's dtype.
    assert torch.equal(a_cat, torch.cat([adapters[0].weights["proj"][0], adapters[1].weights["proj"][0]]).t().float())
    assert torch.equal(b_cat, torch.cat([adapters[0].weights["proj"][1], adapters[1].weights["proj"][1]], dim=1)
                       .t().float())
    assert owner.tolist() == [0] * RANK + [1] * RANK
    assert adapters[0].weights["proj"][0].dtype == torch.bfloat16

    x = torch.randn(6, IN).to(torch.bfloat16)
    out = batch.apply("proj", x, torch.zeros(6, OUT, dtype=torch.bfloat16))
    assert out.dtype == torch.bfloat16
    expected = torch.zeros(6, OUT)
    for rows, adapter in ((slice(0, 3), adapters[0]), (slice(5, 6), adapters[1])):
        a, b = adapter.weights["proj"]
        expected[rows] = x[rows].float() @ a.float().t() @ b.float().t()
    assert torch.equal(out[3:5], torch.zeros(2, OUT, dtype=torch.bfloat16))  # base rows get nothing
    torch.testing.assert_close(out.float(), expected.to(torch.bfloat16).float(), rtol=0.01, atol=0.02)


def test_float32_adapters_keep_float32() -> None:
    adapter = _adapter("one", torch.float32, 0)
    cat = AdapterSet([adapter]).concatenated("proj")
    assert cat is not None and cat[0].dtype == cat[1].dtype == torch.float32
    assert cat[0].is_contiguous() and cat[1].is_contiguous(), "laid out for the matmul, not transposed views"
    x = torch.randn(2, IN)
    out = AdapterBatch(AdapterSet([adapter]), None).apply("proj", x, torch.zeros(2, OUT))
    a, b = adapter.weights["proj"]
    torch.testing.assert_close(out, x @ a.t() @ b.t())
