"""Logprobs and the vLLM sampling controls in the engine and the batched sampler, on the real
default generator: logprobs come from the logits already computed for sampling, prompt
logprobs from the prefill, and both agree with a plain full forward pass of the model."""

from __future__ import annotations

import asyncio

import pytest
import torch

from reference_server.inference.engine.generation import GenerationEngine, TokenEvent
from reference_server.inference.engine.sampling import RowState, SamplingParams, chosen_logprobs, sample
from reference_server.inference.loading import LoadedModel

TEXTS = ["The capital of France is Paris.", "One, two, three, four, five, six", "hi"]


async def _events(engine: GenerationEngine, ids: list[int], params: SamplingParams) -> list[TokenEvent]:
    return [ev async for ev in engine.submit(ids, params)]


def _reference_logprobs(loaded: LoadedModel, ids: list[int]) -> torch.Tensor:
    """log p(token t | tokens < t) for t >= 1, from one uncached forward pass."""
    with torch.inference_mode():
        logits = loaded.model(input_ids=torch.tensor([ids])).logits[0, :-1].float()
    return torch.log_softmax(logits, -1).gather(1, torch.tensor(ids[1:]).unsqueeze(1)).squeeze(1)


async def test_prompt_and_token_logprobs_match_a_full_forward(generator: LoadedModel) -> None:
    engine = GenerationEngine(generator)
    engine.start()
    try:
        prompts = [list(generator.tokenizer(t)["input_ids"]) for t in TEXTS]
        params = [SamplingParams(max_tokens=4, temperature=0, logprobs=3, prompt_logprobs=2) for _ in prompts]
        # Submitted together: prefilled in one left-padded batch, decoded together.
        together = await asyncio.gather(*(_events(engine, p, q) for p, q in zip(prompts, params)))
        scored = await _events(engine, prompts[0], SamplingParams(max_tokens=0, prompt_logprobs=0))
    finally:
        await engine.stop()
    for ids, events in zip(prompts, together):
        first = events[0].prompt_logprobs
        assert first is not None and len(first) == len(ids) and first[0] is None
        expected = _reference_logprobs(generator, ids)
        got = torch.tensor([lp.logprob for lp in first[1:] if lp is not None])
        assert torch.allclose(got, expected, atol=1e-3)
        assert all(len(lp.top) == 2 for lp in first[1:] if lp is not None)
        generated = [ev.token_ids[0] for ev in events]
        token_lps = [ev.logprobs[0] for ev in events if ev.logprobs]
        assert [lp.token_id for lp in token_lps] == generated
        for lp in token_lps:  # greedy: the chosen token is the most likely one, exactly
            assert len(lp.top) == 3 and lp.logprob == lp.top[0][1] and lp.top[0][0] == lp.token_id
        assert all(ev.prompt_logprobs is None for ev in events[1:])
        full = _reference_logprobs(generator, ids + generated)
        assert torch.allclose(torch.tensor([lp.logprob for lp in token_lps]), full[len(ids) - 1:], atol=1e-3)
    (only,) = scored
    assert only.token_ids == [] and only.finish_reason == "length"
    assert only.prompt_logprobs is not None and len(only.prompt_logprobs) == len(prompts[0])
    assert only.prompt_logprobs[1] is not None and only.prompt_logprobs[1].top == ()


async def test_stop_token_ids_end_the_sequence(generator: LoadedModel) -> None:
    engine = GenerationEngine(generator)
    engine.start()
    try:
        ids = list(generator.tokenizer("One, two, three, four,")["input_ids"])
        free = await _events(engine, ids, SamplingParams(max_tokens=6, temperature=0))
        first = free[0].token_ids[0]
        stopped = await _events(engine, ids, SamplingParams(max_tokens=6, temperature=0, stop_token_ids=[first]))
    finally:
        await engine.stop()
    assert len(stopped) == 1 and stopped[0].finish_reason == "stop" and stopped[0].text == ""


def _rows(*params: SamplingParams, outputs: list[list[int]] | None = None,
          prompts: list[list[int]] | None = None) -> list[RowState]:
    outs = outputs or [[] for _ in params]
    ins = prompts or [[] for _ in params]
    return [RowState(p, o, p.make_generator(), prompt_ids=i) for p, o, i in zip(params, outs, ins)]


def test_logit_bias_repetition_penalty_and_min_p_per_row() -> None:
    logits = torch.zeros(4, 10)
    logits[:, 2] = 3.0
    logits[:, 5] = 2.0
    plain = SamplingParams(max_tokens=4, temperature=0)
    biased = SamplingParams(max_tokens=4, temperature=0, logit_bias={7: 100.0, 2: -100.0})
    repeated = SamplingParams(max_tokens=4, temperature=0, repetition_penalty=2.0)  # 3/2 < 2: 5 wins
    narrow = SamplingParams(max_tokens=4, temperature=1.0, min_p=0.5, seed=3)  # only token 2 is within 0.5x
    rows = _rows(plain, biased, repeated, narrow, prompts=[[], [], [2], []])
    before = logits.clone()
    picks = sample(logits, rows, eos_ids=[])
    assert picks == [2, 7, 5, 2]
    assert torch.equal(logits, before)  # the caller's logits are never edited
    # Logprobs are the raw distribution's, whatever the biases did to the choice.
    assert chosen_logprobs(logits, rows, picks) == [None] * 4  # none asked
    raw = torch.log_softmax(logits, -1)
    wanted = _rows(SamplingParams(max_tokens=4, temperature=0, logit_bias={7: 100.0}, logprobs=1))
    (lp,) = chosen_logprobs(logits[:1], wanted, [7])
    assert lp is not None and lp.logprob == pytest.approx(float(raw[0, 7])) and lp.top[0][0] == 2


def test_min_tokens_masks_stop_tokens_too() -> None:
    logits = torch.zeros(1, 10)
    logits[0, 4] = 5.0
    early = SamplingParams(max_tokens=4, temperature=0, min_tokens=2, stop_token_ids=[4])
    assert sample(logits, _rows(early), eos_ids=[9]) != [4]
