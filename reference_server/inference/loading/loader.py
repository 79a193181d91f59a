"""Model loading: turn a `ModelSpec` into a ready-to-run model, tokenizer and its facts.

Weights come only from local folders (Hugging Face layout) or from Python packages that carry
them (`sources`), so every `from_pretrained` call uses `local_files_only=True`. Remote code is
never trusted. The default generator ships as a GGUF file, converted once (`gguf`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from maas_sdk.protocol.vocabulary import Task
from reference_server.inference.loading.device import resolve_device, torch_dtype
from reference_server.inference.loading.gguf import ensure_converted, load_tokenizer
from reference_server.inference.loading.quantize import quantize_int8
from reference_server.inference.loading.sources import resolve_source
from reference_server.inference.loading.spec import LoadedModel, ModelSpec


def load_model(spec: ModelSpec, *, cache_dir: Path, device: str | None = None) -> LoadedModel:
    """Load `spec` onto `device` (default: CUDA when available, else CPU).

    Raises ValueError for combinations that cannot run (float16 or int8 on the wrong device) and
    FileNotFoundError when the weights are not installed.
    """
    import torch

    dev = resolve_device(device)
    dtype = torch_dtype(spec, dev)
    if spec.quantization == "int8" and not dev.startswith("cpu"):
        raise ValueError(f"model {spec.id!r}: int8 dynamic quantization runs on CPU only, not on {dev!r}")
    if spec.quantization == "int8" and dtype != torch.float32:
        raise ValueError(f"model {spec.id!r}: int8 dynamic quantization needs float32 weights")

    folder, gguf_file = resolve_source(spec)
    if gguf_file is not None:
        folder = ensure_converted(folder, gguf_file, cache_dir=cache_dir)

    tokenizer = load_tokenizer(folder)
    model = _model_class(spec.task).from_pretrained(
        str(folder), dtype=dtype, local_files_only=True, trust_remote_code=False
    )
    model.to(dev)
    model.eval()
    parameters = sum(p.numel() for p in model.parameters())
    if spec.quantization == "int8":
        model = quantize_int8(model)

    return LoadedModel(
        spec=spec,
        model=model,
        tokenizer=tokenizer,
        device=dev,
        dtype=str(dtype).removeprefix("torch."),
        context_length=_context_length(spec.task, folder, model.config, tokenizer),
        parameters=parameters,
    )


def _model_class(task: Task) -> Any:
    from transformers import AutoModel, AutoModelForCausalLM, AutoModelForSequenceClassification

    return {
        "generate": AutoModelForCausalLM,
        "embed": AutoModel,
        "classify": AutoModelForSequenceClassification,
    }[task]


# Tokenizers without a real limit report this huge sentinel as model_max_length.
_NO_LIMIT = 1_000_000


def _context_length(task: Task, folder: Path, config: Any, tokenizer: Any) -> int:
    """Longest input the model handles: the position table, narrowed by what the tokenizer
    and (for sentence-transformers folders) the training length say."""
    limits: list[int] = []
    positions = getattr(config, "max_position_embeddings", None)
    if isinstance(positions, int) and positions > 0:
        limits.append(positions)
    tok_max = getattr(tokenizer, "model_max_length", None)
    if isinstance(tok_max, int) and 0 < tok_max < _NO_LIMIT:
        limits.append(tok_max)
    if task == "embed":
        st_config = folder / "sentence_bert_config.json"
        if st_config.is_file():
            seq = json.loads(st_config.read_text()).get("max_seq_length")
            if isinstance(seq, int) and seq > 0:
                limits.append(seq)
    if not limits:
        raise ValueError(f"cannot tell the context length of the model in {folder}")
    return min(limits)
