"""Random LoRA adapters in PEFT's format, written by PEFT itself on a real base model.

Training real adapters takes minutes each; the tests and the tenants benchmark need many
adapters that change a model's output, in exactly the files a fine-tuning job or a PEFT user
writes. So both `lora_A` and `lora_B` are drawn at random (PEFT initialises `B` to zero, which
would leave the output unchanged) and saved with `save_pretrained`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

DEFAULT_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def write_random_adapter(base: Any, folder: Path, *, seed: int, rank: int = 8, alpha: int = 16,
                         std: float = 0.05, targets: Sequence[str] = DEFAULT_TARGETS,
                         task_type: str = "CAUSAL_LM") -> Path:
    """Save a random adapter of `base` (a transformers model, left unchanged) into `folder`."""
    import torch
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(task_type=task_type, r=rank, lora_alpha=alpha, target_modules=list(targets),
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
