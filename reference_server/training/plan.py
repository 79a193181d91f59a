"""What a fine-tuning job will do: its kind, resolved hyperparameters and the model name it produces.

Everything a request leaves out is resolved when the job is created and stored with it, so a
job reports the values it really uses and a resumed job trains exactly like the first attempt.

Two kinds of job exist, chosen by the base model's task:
- `classifier`: an encoder (an `embed` or `classify` model) gets a sequence-classification head
  and learns `{"text", "label"}` data; LoRA on the encoder plus the head trained whole by
  default (`method: full` fine-tunes every weight), so the result is served on the base
  encoder's batcher for the cost of its adapter and head;
- `generator`: a `generate` model learns chat or prompt/completion data; LoRA by default.
"""

from __future__ import annotations

from typing import Any

from maas_sdk.protocol import FineTuneMethod, Hyperparameters
from reference_server.inference.loading import Task

CLASSIFIER = "classifier"
GENERATOR = "generator"

_KIND_BY_TASK = {"embed": CLASSIFIER, "classify": CLASSIFIER, "generate": GENERATOR}
_SERVED_TASK: dict[str, Task] = {CLASSIFIER: "classify", GENERATOR: "generate"}
_DATA_FORMATS = {CLASSIFIER: ("classification",), GENERATOR: ("chat", "prompt_completion")}

_DEFAULTS: dict[str, dict[str, Any]] = {
    CLASSIFIER: {"n_epochs": 3, "batch_size": 16, "method": "lora",
                 "learning_rate": {"full": 1e-4, "lora": 1e-3}},
    GENERATOR: {"n_epochs": 3, "batch_size": 4, "method": "lora",
                "learning_rate": {"full": 2e-5, "lora": 5e-4}},
}

# Longest training example, in tokens; longer ones are cut at the end.
MAX_LENGTH = {CLASSIFIER: 256, GENERATOR: 1024}


# A BERT-style encoder's LoRA targets (its layers' projections, as PEFT names them) and the
# modules of its sequence classifier trained whole: the pooler and the classifier, its head.
BERT_LORA_TARGETS = ("query", "key", "value", "dense")
BERT_HEAD_MODULES = ("classifier", "pooler")


def encoder_lora_modules(model: Any) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
    """(LoRA targets, modules trained whole) of a classifier job's model when its result can be
    served as an adapter and head on the base encoder's batcher: a BERT-style sequence
    classifier built on a plain encoder (not on another classifier, whose head it replaces).
    None otherwise: PEFT's default targets, and the result saved merged, a model of its own."""
    config = getattr(model, "config", None)
    base_architectures = getattr(config, "architectures", None) or []  # as the base folder names them
    if getattr(config, "model_type", None) != "bert" or any(str(a).endswith("ForSequenceClassification")
                                                             for a in base_architectures):
        return None
    return BERT_LORA_TARGETS, BERT_HEAD_MODULES


def kind_for_task(task: str) -> str | None:
    return _KIND_BY_TASK.get(task)


def served_task(kind: str) -> Task:
    """The task the fine-tuned model is served for."""
    return _SERVED_TASK[kind]


def data_formats(kind: str) -> tuple[str, ...]:
    """File formats a job of this kind can learn from."""
    return _DATA_FORMATS[kind]


def resolve(kind: str, hyperparameters: Hyperparameters | None,
            method: FineTuneMethod | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """(hyperparameters, method) with every default filled in."""
    defaults = _DEFAULTS[kind]
    chosen = method.training if method is not None else None
    method_type = chosen or defaults["method"]
    resolved_method: dict[str, Any] = {"type": method_type}
    if method_type == "lora":
        lora = method.lora_config if method is not None else None
        resolved_method["lora"] = {
            "r": lora.r if lora else 8,
            "alpha": lora.alpha if lora else 16,
            "dropout": lora.dropout if lora else 0.0,
        }
    given = hyperparameters or Hyperparameters()
    rate = defaults["learning_rate"][method_type] * (given.learning_rate_multiplier or 1.0)
    resolved = {
        "n_epochs": given.n_epochs or defaults["n_epochs"],
        "batch_size": given.batch_size or defaults["batch_size"],
        "learning_rate": given.learning_rate or rate,
        "max_steps": given.max_steps,
    }
    return resolved, resolved_method


def fine_tuned_model_name(base: str, suffix: str | None, job_id: str) -> str:
    """`ft:<base>:<suffix>:<job-id>`; the suffix field is empty when none was given
    (`ft:<base>::<job-id>`), so the name always has four fields and ends with the job id."""
    return f"ft:{base}:{suffix or ''}:{job_id}"


def total_steps(n_examples: int, hyperparameters: dict[str, Any]) -> int:
    per_epoch = -(-n_examples // int(hyperparameters["batch_size"]))
    steps = per_epoch * int(hyperparameters["n_epochs"])
    max_steps = hyperparameters.get("max_steps")
    return min(steps, int(max_steps)) if max_steps else steps
