"""In bfloat16, as the server runs by default on CPUs with native bfloat16, a prompt served from
the prefix cache is answered as it was without the cache, token for token.

The other engine tests run in float32, where the rounding of a batch shape never decides a
token. In bfloat16 it can: the default generator's first token for "What is the capital of
France?" is a near-tie ("The" 0.08 logits above "L" in float32), and when a repeated prompt's
last token was prefilled alone, the rounding of that one-row forward answered
"L'Étoile, la Marseillaise, ..." the second time (`prefix_cache.PREFILLED_TAIL`).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from reference_server.inference.engine.generation import GenerationEngine
from reference_server.inference.loading import LoadedModel, load_model
from reference_server.inference.loading.device import NATIVE_BF16_FLAGS, cpu_flags
from tests.server.inference.engine.support import collect, greedy, running

pytestmark = pytest.mark.skipif(not cpu_flags() & NATIVE_BF16_FLAGS,
                                reason="bfloat16 is the server's default only on CPUs with native bfloat16")

SYSTEM = "You answer briefly. " + "Background: the lighthouse stands on a rock by the sea. " * 4


@pytest.fixture(scope="module")
def bf16_generator(generator: LoadedModel, cache_dir: Path) -> LoadedModel:
    spec = generator.spec.model_copy()
    spec.dtype = "bfloat16"
    return load_model(spec, cache_dir=cache_dir, device="cpu")


@pytest.fixture(scope="module")
def chats(bf16_generator: LoadedModel) -> list[list[int]]:
    """The near-tie question alone, and two questions behind one long system prompt."""

    def render(question: str, system: str | None = None) -> list[int]:
        messages = ([{"role": "system", "content": system}] if system else []) + [
            {"role": "user", "content": question}]
        return [int(t) for t in bf16_generator.tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, return_dict=False)]

    return [render("What is the capital of France?"), render("Count from 1 to 10.", SYSTEM),
            render("Write a haiku about the sea.", SYSTEM)]


async def _answers(engine: GenerationEngine, prompts: list[list[int]]) -> list[list[int]]:
    """Greedy tokens of each prompt, one after another (each alone in the batch)."""
    return [(await collect(engine.submit(p, greedy(16)))).token_ids for p in prompts]


@pytest.mark.slow  # loads the generator again, in bfloat16
async def test_a_prompt_from_the_prefix_cache_is_answered_as_without_it(
        bf16_generator: LoadedModel, chats: list[list[int]]) -> None:
    """The same question asked again (all but its last tokens from the cache), and a question
    behind a system prompt another one stored (the system prompt from the cache), each get the
    greedy tokens the engine gives them with the prefix cache off."""
    async with running(bf16_generator, prefix_cache_bytes=0) as engine:
        expected = await _answers(engine, chats)
    async with running(bf16_generator) as engine:
        first, again, stored, extended = await _answers(engine, [chats[0], chats[0], chats[1], chats[2]])
        stats = engine.stats()
    assert stats["prefix_hits"] == 2 and stats["prefix_hit_tokens"] > len(chats[0])
    assert [first, again] == [expected[0], expected[0]]
    assert [stored, extended] == expected[1:]
