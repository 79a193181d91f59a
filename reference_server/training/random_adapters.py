"""Random LoRA adapters in PEFT's format, written by PEFT itself on a real base model, and
registered as fine-tuned models of a key through the store; and random fine-tuned classifiers
of an encoder the same way (an adapter plus a head, as a classifier job saves them).

Training real adapters takes minutes each; the tests and the tenants benchmark need many
adapters that change a model's output, in exactly the files a fine-tuning job or a PEFT user
writes. So both `lora_A` and `lora_B` are drawn at random (PEFT initialises `B` to zero, which
would leave the output unchanged) and saved with `save_pretrained`.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from reference_server.storage import DataLayout, JobRecord, Store, ids
from reference_server.training import plan
from reference_server.training.checkpoints import MODEL_MARKER

DEFAULT_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def write_random_adapter(base: Any, folder: Path, *, seed: int, rank: int = 8, alpha: int = 16,
                         std: float = 0.05, targets: Sequence[str] | None = DEFAULT_TARGETS,
                         task_type: str = "CAUSAL_LM") -> Path:
    """Save a random adapter of `base` (a transformers model, left unchanged) into `folder`;
    `targets=None` lets PEFT pick the modules it targets by default (as fine-tuning jobs do)."""
    import torch
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(task_type=task_type, r=rank, lora_alpha=alpha,
                        target_modules=list(targets) if targets is not None else None,
                        init_lora_weights=True)
    peft_model = get_peft_model(base, config)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_A" in name or "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * std)
    peft_model.save_pretrained(str(folder))
    peft_model.unload()  # the base model's own modules back in place, unchanged
    return folder


def write_random_classifier(base_path: Path | str, folder: Path, labels: Sequence[str], *, seed: int,
                            rank: int = 8, alpha: int = 16, std: float = 0.05) -> Path:
    """Save a random fine-tuned classifier of the encoder in `base_path` into `folder`: random LoRA
    weights on the targets a classifier job trains, and a random head (pooler and classifier)
    for `labels`, in the files a classifier job writes."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(
        str(base_path), num_labels=len(labels), id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)}, local_files_only=True, dtype=torch.float32)
    modules = plan.encoder_lora_modules(model)
    if modules is None:
        raise ValueError(f"{base_path} is not a BERT-style encoder a classifier adapter is trained on")
    peft_model = get_peft_model(model, LoraConfig(task_type="SEQ_CLS", r=rank, lora_alpha=alpha,
                                                  target_modules=list(modules[0]), modules_to_save=list(modules[1])))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_A" in name or "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * std)
            elif "modules_to_save" in name:  # the head: moved away from the base pooler, a random classifier
                param.add_(torch.randn(param.shape, generator=generator) * std)
    peft_model.save_pretrained(str(folder))
    return folder


def register_adapter(store: Store, layout: DataLayout, source: Path, *, owner: str, base: str,
                     base_path: str, suffix: str | None = None, labels: Sequence[str] | None = None) -> str:
    """Record the PEFT folder `source` as the result of a succeeded LoRA job of `owner` (a key's
    principal, `key_id(key)`) on `base`, exactly as a finished job leaves it in the store and the
    data directory (a classifier job's, with `labels`); returns the fine-tuned model's id (served
    by the next server start, or by replicas at their next sync)."""
    config = json.loads((source / "adapter_config.json").read_text())
    now = int(time.time())
    kind = plan.CLASSIFIER if labels else plan.GENERATOR
    job = JobRecord(id=ids.new_id(ids.JOB), owner=owner, created_at=now, updated_at=now, model=base,
                    base_path=base_path, kind=kind, status="succeeded", training_file=ids.new_id(ids.FILE),
                    hyperparameters={"n_epochs": 1, "batch_size": 1, "learning_rate": 0.0, "max_steps": None},
                    method={"type": "lora", "lora": {"r": config["r"], "alpha": config["lora_alpha"], "dropout": 0.0}},
                    seed=0, suffix=suffix, finished_at=now, attempt=1)
    job.fine_tuned_model = plan.fine_tuned_model_name(base, suffix, job.id)
    target = layout.model_dir(job.id)
    shutil.copytree(source, target)
    marker = {"job": job.id, "attempt": 1, "base": base, "kind": kind, "task": plan.served_task(kind),
              "labels": list(labels) if labels else None}
    (target / MODEL_MARKER).write_text(json.dumps(marker))
    store.create_job(job)
    return job.fine_tuned_model
