"""Saving and restoring training state, and writing the finished model.

A checkpoint holds what resuming needs and nothing more: the trainable weights (LoRA adapters
and the new head only, for a LoRA job), the optimizer and scheduler state, and the position in
the data (epoch, batch, step). Folders are written under a temporary name, synced and renamed
into place, so a crash mid-write leaves either the old checkpoint or the new one, never half of
one; the same holds for the finished model folder that the server loads.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from pathlib import Path
from typing import Any

from reference_server.storage.layout import TMP_PREFIX

_WEIGHTS = "trainable.safetensors"
_OPTIMIZER = "optimizer.pt"
_SCHEDULER = "scheduler.pt"
_STATE = "state.json"
# Written into a finished model folder; names the job that produced it.
MODEL_MARKER = "maas-fine-tune.json"


def _fsync_tree(folder: Path) -> None:
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())
    _fsync_dir(folder)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(str(folder), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _publish(tmp: Path, target: Path) -> None:
    """Atomically put the finished folder `tmp` at `target`, replacing an older one."""
    _fsync_tree(tmp)
    if target.exists():
        shutil.rmtree(target)
    os.rename(tmp, target)
    _fsync_dir(target.parent)


def _scratch(target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f"{TMP_PREFIX}{target.name}-{secrets.token_hex(4)}"
    tmp.mkdir()
    return tmp


def remove_folder(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)


def save_checkpoint(target: Path, model: Any, optimizer: Any, scheduler: Any, state: dict[str, Any]) -> None:
    import torch
    from safetensors.torch import save_file

    tmp = _scratch(target)
    try:
        weights = {name: p.detach().to("cpu").contiguous() for name, p in model.named_parameters() if p.requires_grad}
        save_file(weights, str(tmp / _WEIGHTS))
        torch.save(optimizer.state_dict(), tmp / _OPTIMIZER)
        torch.save(scheduler.state_dict(), tmp / _SCHEDULER)
        (tmp / _STATE).write_text(json.dumps(state, indent=2))
        _publish(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def load_checkpoint(source: Path, model: Any, optimizer: Any, scheduler: Any) -> dict[str, Any]:
    """Restore `model`'s trainable weights, the optimizer and the scheduler; returns the saved position."""
    import torch
    from safetensors.torch import load_file

    weights = load_file(str(source / _WEIGHTS))
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    if set(weights) != trainable:
        raise ValueError(f"checkpoint {source.name} does not match the model being trained")
    model.load_state_dict(weights, strict=False)
    optimizer.load_state_dict(torch.load(source / _OPTIMIZER, weights_only=True))
    scheduler.load_state_dict(torch.load(source / _SCHEDULER, weights_only=True))
    state: dict[str, Any] = json.loads((source / _STATE).read_text())
    return state


def save_adapter(target: Path, model: Any, marker: dict[str, Any]) -> None:
    """Write a LoRA job's result as a PEFT adapter folder, unmerged (a few MiB: the server
    applies it on its base model's engine rather than loading a copy of the base)."""
    tmp = _scratch(target)
    try:
        model.save_pretrained(str(tmp), safe_serialization=True)
        (tmp / MODEL_MARKER).write_text(json.dumps(marker, indent=2))
        _publish(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def save_model(target: Path, model: Any, tokenizer: Any, marker: dict[str, Any]) -> None:
    """Write a self-contained Hugging Face folder (LoRA adapters merged into the weights)."""
    tmp = _scratch(target)
    try:
        if hasattr(model, "merge_and_unload"):
            model = model.merge_and_unload()
        model.save_pretrained(str(tmp), safe_serialization=True)
        tokenizer.save_pretrained(str(tmp))
        (tmp / MODEL_MARKER).write_text(json.dumps(marker, indent=2))
        _publish(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
