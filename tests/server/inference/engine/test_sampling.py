"""The batched sampler: top-k, top-p, greedy, penalties and parameter validation."""

from __future__ import annotations

import pytest
import torch

from reference_server.inference.engine.sampling import RowState, SamplingParams, sample


def _rows(*params: SamplingParams, outputs: list[list[int]] | None = None) -> list[RowState]:
    outs = outputs or [[] for _ in params]
    return [RowState(p, o, p.make_generator()) for p, o in zip(params, outs)]


def test_sampler_top_k_top_p_and_greedy() -> None:
    logits = torch.randn(4, 1000, generator=torch.Generator().manual_seed(0))
    best = logits.argmax(-1).tolist()
    params = [
        SamplingParams(max_tokens=1, temperature=0),
        SamplingParams(max_tokens=1, temperature=1.5, top_k=1, seed=1),
        SamplingParams(max_tokens=1, temperature=1.0, top_p=1e-6, seed=2),
        SamplingParams(max_tokens=1, temperature=1.0, top_k=5, top_p=0.5, seed=3),
    ]
    for _ in range(5):
        picks = sample(logits.clone(), _rows(*params), eos_ids=[])
        assert picks[:3] == best[:3]
        assert picks[3] in logits[3].topk(5).indices.tolist()


def test_sampler_top_p_beyond_the_candidate_pool_is_exact() -> None:
    flat = torch.zeros(1, 5000)  # uniform: 256 candidates hold ~5% of the mass
    p = SamplingParams(max_tokens=1, temperature=1.0, top_p=0.5, seed=11)
    picks = {sample(flat.clone(), _rows(p), eos_ids=[])[0] for _ in range(50)}
    assert max(picks) >= 256  # drawn from the full top-50% set, not only the pool


def test_sampler_penalties_and_min_tokens() -> None:
    logits = torch.zeros(2, 10)
    logits[:, 3] = 1.0
    logits[:, 9] = 5.0  # "EOS"
    penalised = SamplingParams(max_tokens=5, temperature=0, frequency_penalty=1.0, presence_penalty=0.5)
    early = SamplingParams(max_tokens=5, temperature=0, min_tokens=2)
    picks = sample(logits.clone(), _rows(penalised, early, outputs=[[9, 3], [1]]), eos_ids=[9])
    # Row 0: token 9 drops to 5 - 1 - 0.5 = 3.5 and still wins. Row 1: EOS is masked, so token 3 wins.
    assert picks == [9, 3]
    # Four earlier 9s: 5 - 4 - 0.5 = 0.5 < 1, so token 3 wins.
    picks = sample(logits[:1].clone(), _rows(penalised, outputs=[[9, 9, 9, 9]]), eos_ids=[9])
    assert picks == [3]


def test_sampling_params_validation() -> None:
    for bad in (
        {"max_tokens": 0},
        {"max_tokens": 1, "min_p": 2},
        {"max_tokens": 1, "repetition_penalty": 0},
        {"temperature": -1},
        {"top_p": 0},
        {"top_k": 0},
        {"stop": [""]},
        {"min_tokens": 9},
        {"presence_penalty": 3},
    ):
        with pytest.raises(ValueError):
            SamplingParams(**{"max_tokens": 4, **bad})  # type: ignore[arg-type]


