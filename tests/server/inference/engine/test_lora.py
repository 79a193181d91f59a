"""Adapters served in the base generator's shared batch, on the real model in float32: an adapter
row among base rows and other adapters' rows decodes exactly what the same adapter merged into
the base model decodes alone; prefixes are never shared across adapters; eviction never frees
an adapter a request still runs on; a corrupt adapter fails its own requests only."""

from __future__ import annotations

import asyncio
import copy
import gc
import shutil
import weakref
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio
import torch

from reference_server.inference.engine.adapters import AdapterSource
from reference_server.inference.engine.errors import AdapterUnusableError
from reference_server.inference.engine.generation import GenerationEngine
from reference_server.inference.engine.lora import AdapterError, AdapterLinear
from reference_server.inference.loading import LoadedModel, load_model
from reference_server.training.random_adapters import write_random_adapter
from tests.server.inference.engine.support import Result, collect, greedy, running, wait_until

# Loads adapters into real engines (about 50 s): make test runs it, make test-fast does not.
pytestmark = pytest.mark.slow

# Both engines pack their weights the same way, so merged and unmerged runs differ only by
# where the adapter's product is added.
ENGINE = {"packed_weights": "on"}


@dataclass
class Adapters:
    folders: list[Path]
    merged_first: list[Result]  # adapter 0 merged into the base model, each prompt decoded alone
    merged_folder: Path  # that merged model, saved as LoRA jobs saved their models before

    def source(self, i: int) -> AdapterSource:
        return AdapterSource(f"ft:adapter-{i}", self.folders[i])


@pytest.fixture(scope="module")
def lora_prompts(prompts: list[list[int]]) -> list[list[int]]:
    return prompts[:3]


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def adapters(generator: LoadedModel, cache_dir: Path, tmp_path_factory: pytest.TempPathFactory,
                   lora_prompts: list[list[int]]) -> Adapters:
    """Four random rank-8 PEFT adapters of the real base model, and the greedy output of the first
    one merged into a fresh copy of the base (by PEFT's `merge_and_unload`) and run alone."""
    from peft import PeftModel

    root = tmp_path_factory.mktemp("adapters")
    base = load_model(generator.spec, cache_dir=cache_dir, device=generator.device)
    folders = [write_random_adapter(base.model, root / f"a{i}", seed=i, std=0.08) for i in range(4)]
    merged = copy.copy(base)
    merged.model = PeftModel.from_pretrained(base.model, str(folders[0])).merge_and_unload()
    merged.model.save_pretrained(str(root / "merged"))
    async with running(merged, prefill_chunk_tokens=0, prefix_cache_bytes=0, **ENGINE) as engine:
        alone = [await collect(engine.submit(p, greedy())) for p in lora_prompts]
    return Adapters(folders, alone, root / "merged")


async def _run(engine: GenerationEngine, prompt: list[int], source: AdapterSource | None,
               max_tokens: int = 20) -> Result:
    return await collect(engine.submit(prompt, greedy(max_tokens), adapter=source))


async def test_adapter_row_in_mixed_batch_equals_merged_alone(
        generator: LoadedModel, adapters: Adapters, lora_prompts: list[list[int]]) -> None:
    async with running(generator, max_running=16, prefill_chunk_tokens=16, **ENGINE) as engine:
        base_alone = [await _run(engine, p, None) for p in lora_prompts]
        tasks = []
        for p in lora_prompts:  # base rows and rows of three other adapters, around adapter 0's
            tasks += [asyncio.create_task(_run(engine, p, None))]
            tasks += [asyncio.create_task(_run(engine, p, adapters.source(i))) for i in (1, 2, 3)]
        await wait_until(lambda: engine.stats()["generated_tokens"] > len(lora_prompts) * 20 + 4)
        tested = [asyncio.create_task(_run(engine, p, adapters.source(0))) for p in lora_prompts]
        mixed = await asyncio.gather(*tasks)
        first = await asyncio.gather(*tested)
        stats = engine.stats()
    assert [r.token_ids for r in first] == [r.token_ids for r in adapters.merged_first]
    assert [r.text for r in first] == [r.text for r in adapters.merged_first]
    assert [r.token_ids for r in first] != [r.token_ids for r in base_alone]  # the adapter changes output
    base_rows = [r for i, r in enumerate(mixed) if i % 4 == 0]
    assert [r.token_ids for r in base_rows] == [r.token_ids for r in base_alone]
    for k in (1, 2, 3):
        assert [r.token_ids for i, r in enumerate(mixed) if i % 4 == k] != [r.token_ids for r in base_rows]
    assert stats["adapter_loads"] == 4
    assert stats["adapters_resident"] == 4


async def test_prefixes_are_never_shared_across_adapters(
        generator: LoadedModel, adapters: Adapters, lora_prompts: list[list[int]]) -> None:
    prompt = lora_prompts[0]
    async with running(generator, **ENGINE) as engine:
        await _run(engine, prompt, None)
        assert engine.stats()["prefix_cache_entries"] == 1
        first = await _run(engine, prompt, adapters.source(0))
        assert engine.stats()["prefix_hits"] == 0  # the base model's prefix was not taken
        again = await _run(engine, prompt, adapters.source(0))
        assert engine.stats()["prefix_hits"] == 1  # its own prefix is
    assert first.token_ids == again.token_ids == adapters.merged_first[0].token_ids


async def test_an_evicted_adapter_lives_until_its_request_ends(
        generator: LoadedModel, adapters: Adapters, lora_prompts: list[list[int]]) -> None:
    async with running(generator, max_loras=1, **ENGINE) as engine:
        tokens: list[int] = []
        handle = engine.submit(lora_prompts[0], greedy(40, ignore_eos=True), adapter=adapters.source(0))
        long_run = asyncio.create_task(collect(handle, tokens.append))
        await wait_until(lambda: len(tokens) >= 2)
        held = weakref.ref(engine.adapters.get(adapters.source(0)))  # type: ignore[arg-type]
        other = await _run(engine, lora_prompts[1], adapters.source(1))  # evicts adapter 0
        assert not engine.adapters.holds(adapters.source(0).name)
        assert engine.stats()["adapter_evictions"] == 1
        assert held() is not None and not long_run.done()  # still in use
        result = await long_run
        await _run(engine, lora_prompts[1], adapters.source(1))  # a step without adapter 0
        gc.collect()
        assert held() is None  # freed once its request ended
    assert result.token_ids[:len(adapters.merged_first[0].token_ids) - 1] == \
        adapters.merged_first[0].token_ids[:-1]
    assert other.finish_reason is not None


async def test_a_corrupt_adapter_fails_its_requests_only(
        generator: LoadedModel, adapters: Adapters, lora_prompts: list[list[int]], tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt"
    shutil.copytree(adapters.folders[1], corrupt)
    (corrupt / "adapter_model.safetensors").write_bytes(b"\x00\x01 not safetensors")
    source = AdapterSource("ft:corrupt", corrupt)
    async with running(generator, **ENGINE) as engine:
        base = asyncio.create_task(_run(engine, lora_prompts[0], None))
        with pytest.raises(AdapterUnusableError) as failed:
            await _run(engine, lora_prompts[0], source)
        assert failed.value.param == "model" and "ft:corrupt" in failed.value.message
        assert str(corrupt) not in failed.value.message  # no server path in what the caller sees
        with pytest.raises(AdapterUnusableError):  # known unusable: refused at once
            engine.submit(lora_prompts[0], greedy(), adapter=source)
        assert (await base).finish_reason is not None
        assert (await _run(engine, lora_prompts[0], adapters.source(0))).token_ids == \
            adapters.merged_first[0].token_ids


async def test_adapters_of_another_base_or_too_large_a_rank_are_refused(
        generator: LoadedModel, adapters: Adapters, tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    other = tmp_path / "other-base"
    shutil.copytree(adapters.folders[0], other)
    weights = load_file(str(other / "adapter_model.safetensors"))
    save_file({k: v[:, :100].contiguous() if "lora_A" in k else v for k, v in weights.items()},
              str(other / "adapter_model.safetensors"))
    async with running(generator, max_lora_rank=4, **ENGINE) as engine:
        with pytest.raises(AdapterError, match="rank 8, above MAAS_MAX_LORA_RANK=4") as big:
            engine.adapters.load(AdapterSource("big", adapters.folders[0]))
        assert big.value.param == "r"
    async with running(generator, **ENGINE) as engine:
        with pytest.raises(AdapterError, match="another base model"):
            engine.adapters.load(AdapterSource("other", other))
        # Every projection wrapped once, however many engines ran on the model.
        wrapped = [m for m in generator.model.modules() if isinstance(m, AdapterLinear)]
        assert len(wrapped) == 7 * generator.model.config.num_hidden_layers


async def test_a_lora_fine_tune_saved_merged_is_served_as_an_adapter(
        generator: LoadedModel, adapters: Adapters, lora_prompts: list[list[int]]) -> None:
    """Models LoRA jobs saved merged keep being served, on the base engine: their difference from
    the base model's weights is the merged adapter, and decodes what the merged model decodes."""
    source = AdapterSource("ft:legacy", adapters.merged_folder, merged_on=Path(generator.model.name_or_path))
    async with running(generator, **ENGINE) as engine:
        results = await asyncio.gather(*(_run(engine, p, source) for p in lora_prompts))
        legacy = engine.adapters.get(source)
        assert legacy is not None and legacy.rank == 8  # the rank of the LoRA that was merged
    assert [r.token_ids for r in results] == [r.token_ids for r in adapters.merged_first]


async def test_a_full_fine_tune_is_not_taken_for_a_lora(generator: LoadedModel, adapters: Adapters,
                                                       tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    full = tmp_path / "full"
    shutil.copytree(adapters.merged_folder, full)
    weights = load_file(str(full / "model.safetensors"))
    save_file({k: v + 0.01 * torch.randn_like(v) if k.endswith("q_proj.weight") else v for k, v in weights.items()},
              str(full / "model.safetensors"), metadata={"format": "pt"})
    async with running(generator, **ENGINE) as engine:
        with pytest.raises(AdapterError, match="a full fine-tune"):
            engine.adapters.load(AdapterSource("ft:full", full, merged_on=Path(generator.model.name_or_path)))


async def test_adapter_requests_cancel_while_loading_and_while_running(
        generator: LoadedModel, adapters: Adapters, lora_prompts: list[list[int]]) -> None:
    async with running(generator, **ENGINE) as engine:
        loading = engine.submit(lora_prompts[0], greedy(), adapter=adapters.source(2))
        loading.cancel()  # before its adapter is in: it never joins the batch
        tokens: list[int] = []
        handle = engine.submit(lora_prompts[1], greedy(40, ignore_eos=True), adapter=adapters.source(3))
        task = asyncio.create_task(collect(handle, tokens.append))
        await wait_until(lambda: len(tokens) >= 2)
        handle.cancel()
        await task
        await wait_until(lambda: engine.stats()["running"] == 0)
        stats = engine.stats()
        assert stats["cancelled"] == 2 and stats["failed"] == 0
        assert len(tokens) < 40
        again = await _run(engine, lora_prompts[0], adapters.source(0))
    assert again.token_ids == adapters.merged_first[0].token_ids
