"""Steps compiled per bucket of tokens (compiled_decode): the compiled graph gives the eager
engine's greedy tokens, pads a smaller step into its bucket, runs prompt tokens that fit in it
too, leaves larger steps eager, and reports what it compiled."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import torch

from reference_server.inference.engine import compiled_decode, llama_forward
from reference_server.inference.loading import LoadedModel, load_model
from reference_server.settings import Settings
from tests.server.inference.engine.support import collect, greedy, running, transformers_alone

TOKENS = 24


@pytest.fixture(scope="module")
def fresh_generator(generator: LoadedModel, cache_dir: Path) -> LoadedModel:
    """A copy of the generator as transformers loads it (float32): no engine has fused or packed it."""
    return load_model(generator.spec.model_copy(), cache_dir=cache_dir, device=generator.device)


@pytest.mark.slow  # compiles one bucket (about a minute on two cores) and decodes 24 tokens of 5 prompts
async def test_compiled_decode_steps_give_the_eager_engines_greedy_tokens(
        fresh_generator: LoadedModel, prompts: list[list[int]], tmp_path: Path) -> None:
    """In float32, token for token: plain transformers' greedy tokens of each prompt alone."""
    expected = [transformers_alone(fresh_generator, p, TOKENS) for p in prompts]
    short_prompt = prompts[0][:1]  # one token: its prefill fits in the bucket, beside one decoding row too
    expected_short = transformers_alone(fresh_generator, short_prompt, TOKENS)
    async with running(fresh_generator, packed_weights="on", compile_buckets=(2,),
                       compile_cache_dir=tmp_path / "inductor") as engine:
        compiled = engine.compiled
        assert compiled is not None, "the default generator's decode steps compile on CPU"
        assert await asyncio.to_thread(compiled.wait, 600), compiled.failed
        assert compiled.ready_buckets == [2] and compiled.seconds[2] > 0
        graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"]
        stats = engine.stats()
        assert stats["compiled_buckets"] == 1 and stats["compile_ms"] > 0

        # One sequence: padded into the bucket of two rows.
        one = await collect(engine.submit(prompts[0], greedy(TOKENS, min_tokens=TOKENS)))
        after_one = engine.stats()["compiled_steps"]
        assert after_one >= TOKENS - 2  # every step but the prompt's ran compiled
        # Two together fill the bucket; three decode eager (beyond the largest bucket) until one ends.
        pair = await asyncio.gather(*(collect(engine.submit(p, greedy(TOKENS, min_tokens=TOKENS)))
                                      for p in prompts[1:3]))
        after_pair = engine.stats()["compiled_steps"]
        assert after_pair - after_one >= TOKENS - 2
        three = await asyncio.gather(*(collect(engine.submit(p, greedy(TOKENS, min_tokens=TOKENS)))
                                       for p in prompts[2:5]))
        after_three = engine.stats()["compiled_steps"]
        assert after_three - after_pair < TOKENS - 2
        # A one-token prompt beside a decoding row: its prefill and every step after run compiled.
        events = aiter(engine.submit(prompts[1], greedy(TOKENS, min_tokens=TOKENS)))
        await anext(events)  # its prompt is prefilled: it decodes
        beside = await collect(engine.submit(short_prompt, greedy(TOKENS, min_tokens=TOKENS)))
        async for _ in events:
            pass
        assert engine.stats()["compiled_steps"] - after_three >= TOKENS
        # Every compiled step ran the bucket's one graph: none was compiled again on the engine thread.
        assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == graphs

    assert one.token_ids == expected[0]
    assert [r.token_ids for r in pair] == expected[1:3]
    assert [r.token_ids for r in three] == expected[2:5]
    assert beside.token_ids == expected_short


def test_decoding_stays_eager_where_compiling_does_not_apply(generator: LoadedModel) -> None:
    forward = llama_forward.build(generator.model)
    assert forward is not None
    assert compiled_decode.build(forward, torch.device("cpu"), (), 16, None) is None  # no buckets asked for
    assert compiled_decode.build(None, torch.device("cpu"), (1,), 16, None) is None  # transformers' forward
    assert compiled_decode.supported(forward, torch.device("cuda")) is not None


def test_compile_buckets_setting_is_parsed_and_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAAS_ENGINE_COMPILE_BUCKETS", "8, 1,4,1")
    assert Settings().engine_compile_buckets == [1, 4, 8]
    monkeypatch.setenv("MAAS_ENGINE_COMPILE_BUCKETS", "0,2")
    with pytest.raises(ValueError, match="engine_compile_buckets"):
        Settings()
