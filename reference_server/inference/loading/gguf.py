"""The GGUF conversion cache.

Transformers dequantizes GGUF on every load, which takes about ten times longer than reading
safetensors, so the first load converts it once into a safetensors folder under the cache
directory and later loads read that folder. The folder is written under a temporary name and
renamed into place, so a crash mid-write never leaves a cache that looks complete.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

# Written last into a converted folder; its presence marks a finished conversion.
CONVERSION_MARKER = "maas-conversion.json"
_CONVERTED_SUBDIR = "converted"
_TMP_PREFIX = ".tmp-"
# Temporary folders older than this were left by a crashed conversion and can be removed.
_STALE_TMP_SECONDS = 3600.0


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
    if template and load_tokenizer(out).chat_template != template:
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


def load_tokenizer(folder: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(folder), local_files_only=True, trust_remote_code=False)
