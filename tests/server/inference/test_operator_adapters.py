"""The operator's adapters (`MAAS_LORA_MODULES`), read at start on the real generator: one that
fits is served to every key on its base's engine; a corrupt file, an adapter of another base
model and too large a rank are refused with a message that names the adapter."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
import torch
from safetensors.torch import save_file

from reference_server.inference.engine.lora import AdapterError
from reference_server.inference.loading import LoadedModel
from reference_server.inference.registry import ModelRegistry
from reference_server.inference.service import ModelsService, serve_loaded, stop_served
from reference_server.settings import Settings

PREFIX = "base_model.model.model.layers.0.self_attn."


def _adapter(folder: Path, *, rank: int = 4, width: int = 576, weights: bytes | None = None) -> Path:
    """A PEFT folder by hand: `q_proj` of layer 0, `width` inputs."""
    folder.mkdir()
    config = {"peft_type": "LORA", "r": rank, "lora_alpha": 2 * rank, "target_modules": ["q_proj"],
              "base_model_name_or_path": "elsewhere"}
    (folder / "adapter_config.json").write_text(json.dumps(config))
    if weights is not None:
        (folder / "adapter_model.safetensors").write_bytes(weights)
    else:
        save_file({PREFIX + "q_proj.lora_A.weight": torch.randn(rank, width) * 0.05,
                   PREFIX + "q_proj.lora_B.weight": torch.randn(576, rank) * 0.05},
                  str(folder / "adapter_model.safetensors"))
    return folder


@pytest_asyncio.fixture(loop_scope="session")
async def service(generator: LoadedModel) -> AsyncIterator[ModelsService]:
    settings = Settings(default_models=False, max_lora_rank=8, packed_weights="off")
    registry = ModelRegistry()
    base = serve_loaded(generator, settings)
    registry.register(base)
    try:
        yield ModelsService(settings, registry)
    finally:
        await stop_served(base)


async def test_a_fitting_adapter_is_served_to_every_key(service: ModelsService, tmp_path: Path,
                                                        generator: LoadedModel) -> None:
    service.serve_operator_adapter("support", _adapter(tmp_path / "ok"))
    served = service.registry.get("support", "key_anyone")
    assert served.owner is None and served.parent == generator.spec.id and served.adapter is not None
    assert served.engine is service.registry.get(generator.spec.id, "key_anyone").engine
    assert served.engine is not None and served.engine.adapters.holds("support")


@pytest.mark.parametrize(("case", "expected"), [
    ("corrupt", "'bad' is refused: .*cannot be read"),
    ("other base", "'bad' is refused: .*another base model"),
    ("rank", "'bad' is refused: .*rank 16, above MAAS_MAX_LORA_RANK=8"),
])
async def test_an_unusable_adapter_is_refused_naming_it(service: ModelsService, tmp_path: Path, case: str,
                                                        expected: str) -> None:
    folder = {"corrupt": lambda: _adapter(tmp_path / "a", weights=b"garbage"),
              "other base": lambda: _adapter(tmp_path / "a", width=960),
              "rank": lambda: _adapter(tmp_path / "a", rank=16)}[case]()
    with pytest.raises(AdapterError, match=expected):
        service.serve_operator_adapter("bad", folder)
    assert not service.registry.serves("bad")


async def test_a_process_without_the_base_model_checks_an_adapter_and_serves_nothing(tmp_path: Path) -> None:
    """A cluster's supervisor serves no base model: a finished LoRA job's adapter is checked there
    (the job then succeeds) and served by the replicas that have its base model."""
    from reference_server.inference.loading import ModelSpec

    service = ModelsService(Settings(default_models=False, max_lora_rank=8), ModelRegistry())
    good = ModelSpec(id="ft:x::ftjob-1", path=str(_adapter(tmp_path / "ok")), task="generate")
    await service.serve(good, parent="smollm2-135m-instruct", owner="key_a")
    assert not service.registry.serves(good.id)
    big = ModelSpec(id="ft:x::ftjob-2", path=str(_adapter(tmp_path / "big", rank=16)), task="generate")
    with pytest.raises(AdapterError, match="MAAS_MAX_LORA_RANK=8"):
        await service.serve(big, parent="smollm2-135m-instruct", owner="key_a")
