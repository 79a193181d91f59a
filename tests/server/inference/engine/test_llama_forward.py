"""The engine's own Llama-family forward (llama_forward) on the real generator: its greedy tokens
are transformers' own, token for token, and models outside the family keep transformers' path."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from transformers import GPT2Config, GPT2LMHeadModel

from reference_server.inference.engine import llama_forward
from reference_server.inference.loading import LoadedModel, load_model
from tests.server.inference.engine.support import collect, greedy, running, transformers_alone

TOKENS = 64


@pytest.fixture(scope="module")
def fresh_generator(generator: LoadedModel, cache_dir: Path) -> LoadedModel:
    """A copy of the generator as transformers loads it: no engine has fused or packed it."""
    return load_model(generator.spec.model_copy(), cache_dir=cache_dir, device=generator.device)


@pytest.mark.slow  # loads a second copy of the generator; 64 tokens of 5 prompts, twice
async def test_own_forward_greedy_equals_transformers_alone(fresh_generator: LoadedModel,
                                                            prompts: list[list[int]]) -> None:
    """Every prompt batched through the engine's own forward (weights packed, as the server runs
    on CPU) gives plain transformers' greedy tokens for that prompt alone (in float32 any
    difference is a bug, not rounding)."""
    expected = [transformers_alone(fresh_generator, p, TOKENS) for p in prompts]
    async with running(fresh_generator, packed_weights="on") as engine:
        assert engine._forward is not None, "the default generator is a Llama-family model"
        handles = [engine.submit(p, greedy(TOKENS, min_tokens=TOKENS)) for p in prompts]
        together = await asyncio.gather(*(collect(h) for h in handles))
    assert [r.token_ids for r in together] == expected
    # transformers' own modules, now over the fused weights' views and the packed layers, agree too.
    assert transformers_alone(fresh_generator, prompts[0], TOKENS) == expected[0]


def test_other_architectures_keep_transformers_forward() -> None:
    model = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=64))
    assert llama_forward.supported(model) == "model type 'gpt2' is not of the Llama family"
    assert llama_forward.build(model) is None


def test_fused_projections_share_the_model_weights(generator: LoadedModel) -> None:
    """The model's q/k/v and gate/up are views of the fused weights: one copy, both forwards."""
    forward = llama_forward.build(generator.model)
    assert forward is not None
    attn = generator.model.model.layers[0].self_attn
    # An engine may have wrapped them for adapters already: the weight is its base layer's.
    q, k = (getattr(p, "base", p) for p in (attn.q_proj, attn.k_proj))
    fused = forward._layers[0].qkv.linear.weight
    assert q.weight.data_ptr() == fused.data_ptr()
    assert k.weight.data_ptr() == fused[q.out_features:].data_ptr()
