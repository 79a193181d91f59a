"""The training loop shared by both kinds of job, run inside the worker process.

One loop serves classifiers and generators; they differ only in how the model is built, how
records are encoded and which validation metrics are computed. The loop is plain PyTorch
(AdamW, linear decay, gradient clipping) rather than `transformers.Trainer`, because it must
stop between any two steps on request, save and restore its exact position, and report every
step to the job store, none of which `Trainer` exposes cleanly.

Data order is a fixed function of (seed, epoch), so a job resumed from a checkpoint sees the
same batches it would have seen had it never stopped.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reference_server import datasets
from reference_server.datasets.encoding import (
    Encoded,
    collate,
    encode_classification,
    encode_generation_record,
    pad_id,
    token_batches,
    token_losses,
)
from reference_server.storage import DataLayout, JobRecord, NewEvent, Store
from reference_server.training import checkpoints, plan

# Checkpoints kept per job (the newest ones); older folders are deleted.
KEEP_CHECKPOINTS = 3
# A job logs at most about this many per-step metric events, however long it runs.
_MAX_STEP_EVENTS = 200


class TrainingError(RuntimeError):
    """The job cannot be trained as asked; the message is shown to the user as the job's error."""


class StopRequested(Exception):
    """The worker was asked to stop; a checkpoint of the current position has been saved."""


class Superseded(Exception):
    """The job is no longer this worker's: it was cancelled, or re-queued after a restart."""


@dataclass
class Position:
    step: int = 0
    epoch: int = 0
    batch: int = 0
    trained_tokens: int = 0


class Trainer:
    def __init__(self, store: Store, layout: DataLayout, job: JobRecord, device: str,
                 should_stop: Callable[[], bool]) -> None:
        self.store = store
        self.layout = layout
        self.job = job
        self.device = device
        self.should_stop = should_stop
        self.kind = job.kind
        self.hp = job.hyperparameters
        self.labels: list[str] = []

    # Reporting, fenced by the attempt so a stale worker can never write.

    def _update(self, events: Sequence[NewEvent] = (), **changes: Any) -> None:
        if not self.store.update_job(self.job.id, if_status=("running",), if_attempt=self.job.attempt,
                                     events=events, **changes):
            raise Superseded(self.job.id)

    def _event(self, message: str, **kwargs: Any) -> None:
        self._update(events=[NewEvent(message, **kwargs)])

    # Data and model

    def _load_file(self, file_id: str, what: str) -> list[dict[str, Any]]:
        path = self.layout.file_path(file_id)
        if not path.is_file():
            raise TrainingError(f"the {what} file {file_id} no longer exists")
        info, records = datasets.load(path)
        if info.format not in plan.data_formats(self.kind):
            raise TrainingError(f"the {what} file {file_id} holds {info.format} data, which a {self.kind} "
                               "job cannot learn from")
        return records

    def _encode(self, tokenizer: Any, records: list[dict[str, Any]], what: str) -> list[Encoded]:
        limit = plan.MAX_LENGTH[self.kind]
        if self.kind == plan.CLASSIFIER:
            index = {label: i for i, label in enumerate(self.labels)}
            unknown = sorted({datasets.label_of(r) for r in records} - set(index))
            if unknown:
                raise TrainingError(f"the {what} file has labels absent from the training file: {', '.join(unknown)}")
            return [encode_classification(tokenizer, r["text"], index[datasets.label_of(r)], limit, r.get("text_pair"))
                    for r in records]
        encoded = [encode_generation_record(tokenizer, r, limit) for r in records]
        kept = [e for e in encoded if e.target_tokens > 0]
        if not kept:
            raise TrainingError(f"no example of the {what} file has tokens to learn within {limit} tokens")
        if len(kept) < len(encoded):
            self._event(f"{len(encoded) - len(kept)} {what} examples were skipped: their target tokens lie "
                        f"beyond the {limit}-token limit.", level="warn")
        return kept

    def _build_model(self) -> Any:
        import torch
        from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

        common: dict[str, Any] = {"dtype": torch.float32, "local_files_only": True, "trust_remote_code": False}
        if self.kind == plan.CLASSIFIER:
            model = AutoModelForSequenceClassification.from_pretrained(
                self.job.base_path, num_labels=len(self.labels),
                id2label=dict(enumerate(self.labels)), label2id={l: i for i, l in enumerate(self.labels)},
                ignore_mismatched_sizes=True, problem_type="single_label_classification", **common)
            task_type = "SEQ_CLS"
        else:
            model = AutoModelForCausalLM.from_pretrained(self.job.base_path, **common)
            task_type = "CAUSAL_LM"
        if self.job.method["type"] == "lora":
            from peft import LoraConfig, get_peft_model

            lora = self.job.method["lora"]
            targets = plan.encoder_lora_modules(model) if self.kind == plan.CLASSIFIER else None
            model = get_peft_model(model, LoraConfig(
                task_type=task_type, r=lora["r"], lora_alpha=lora["alpha"], lora_dropout=lora["dropout"],
                target_modules=list(targets[0]) if targets else None,
                modules_to_save=list(targets[1]) if targets else None))
        return model.to(self.device)

    # The loop

    def run(self) -> None:
        import torch
        from transformers import AutoTokenizer, get_linear_schedule_with_warmup

        torch.manual_seed(self.job.seed)
        train_records = self._load_file(self.job.training_file, "training")
        valid_records = self._load_file(self.job.validation_file, "validation") if self.job.validation_file else []
        if self.kind == plan.CLASSIFIER:
            self.labels = sorted({datasets.label_of(r) for r in train_records})
            if len(self.labels) < 2:
                raise TrainingError("the training file has a single label; a classifier needs at least two")
        tokenizer = AutoTokenizer.from_pretrained(self.job.base_path, local_files_only=True, trust_remote_code=False)
        train = self._encode(tokenizer, train_records, "training")
        valid = self._encode(tokenizer, valid_records, "validation") if valid_records else []
        pad = pad_id(tokenizer)

        model = self._build_model()
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=float(self.hp["learning_rate"]), weight_decay=0.0)
        total = plan.total_steps(len(train), self.hp)
        scheduler = get_linear_schedule_with_warmup(  # type: ignore[no-untyped-call]
            optimizer, num_warmup_steps=0, num_training_steps=total)
        position = self._resume(model, optimizer, scheduler)
        resumed_at = position.step
        trainable = sum(p.numel() for p in params)
        self._update(total_steps=total, events=[NewEvent(
            f"Training {self.kind} on {len(train)} examples for {total} steps "
            f"({self.job.method['type']}, {trainable:,} trainable parameters).",
            data={"total_steps": total, "examples": len(train), "trainable_parameters": trainable})])

        batch_size = int(self.hp["batch_size"])
        per_epoch = math.ceil(len(train) / batch_size)
        log_every = max(1, total // _MAX_STEP_EVENTS)
        while position.epoch < int(self.hp["n_epochs"]) and position.step < total:
            order = torch.randperm(len(train), generator=torch.Generator().manual_seed(self.job.seed + position.epoch))
            epoch_losses: list[float] = []
            while position.batch < per_epoch and position.step < total:
                if self.should_stop():
                    if position.step > resumed_at:
                        self._checkpoint(position, model, optimizer, scheduler, {}, "stopped")
                    raise StopRequested(self.job.id)
                rows = order[position.batch * batch_size:(position.batch + 1) * batch_size].tolist()
                batch = {k: v.to(self.device) for k, v in collate([train[i] for i in rows], pad).items()}
                model.train()
                loss = model(**batch).loss
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                position.step += 1
                position.batch += 1
                position.trained_tokens += int(batch["attention_mask"].sum())
                step_loss = float(loss.detach())
                epoch_losses.append(step_loss)
                events = []
                if position.step % log_every == 0 or position.step == total:
                    events.append(NewEvent(
                        f"Step {position.step}/{total}: training loss={step_loss:.4f}", type="metrics",
                        data={"step": position.step, "total_steps": total, "train_loss": step_loss,
                              "learning_rate": scheduler.get_last_lr()[0],
                              "epoch": position.epoch + position.batch / per_epoch}))
                self._update(step=position.step, trained_tokens=position.trained_tokens, events=events)
            metrics = self._epoch_metrics(model, valid, pad, epoch_losses)
            position.epoch, position.batch = position.epoch + 1, 0
            self._report_epoch(position, metrics)
            self._checkpoint(position, model, optimizer, scheduler, metrics, "epoch")

        self._finish(model, tokenizer, position)

    def _epoch_metrics(self, model: Any, valid: list[Encoded], pad: int, losses: list[float]) -> dict[str, float]:
        metrics: dict[str, float] = {}
        if losses:
            metrics["train_loss"] = sum(losses) / len(losses)
        if valid:
            metrics.update(self._validate(model, valid, pad))
        return metrics

    def _report_epoch(self, position: Position, metrics: dict[str, float]) -> None:
        shown = ", ".join(f"{k}={v:.4f}" for k, v in metrics.items()) or "no metrics"
        self._event(f"Epoch {position.epoch} done at step {position.step}: {shown}", type="metrics",
                    data={"step": position.step, "epoch": position.epoch, **metrics})

    def _validate(self, model: Any, valid: list[Encoded], pad: int) -> dict[str, float]:
        import torch

        model.eval()
        loss_sum, count, correct = 0.0, 0, 0
        with torch.no_grad():
            for chunk in token_batches(valid):
                batch = {k: v.to(self.device) for k, v in collate(chunk, pad).items()}
                if self.kind == plan.CLASSIFIER:
                    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
                    loss_sum += float(torch.nn.functional.cross_entropy(logits, batch["labels"], reduction="sum"))
                    correct += int((logits.argmax(-1) == batch["labels"]).sum())
                    count += len(batch["labels"])
                else:
                    nll, tokens, hits = token_losses(model, batch)
                    loss_sum += float(nll.sum())
                    count += int(tokens.sum())
                    correct += int(hits.sum())
        name = "valid_accuracy" if self.kind == plan.CLASSIFIER else "valid_token_accuracy"
        return {"valid_loss": loss_sum / max(count, 1), name: correct / max(count, 1)}

    def _checkpoint(self, position: Position, model: Any, optimizer: Any, scheduler: Any,
                    metrics: dict[str, float], reason: str) -> None:
        target = self.layout.checkpoint_dir(self.job.id, self.job.attempt, position.step)
        state = {"step": position.step, "epoch": position.epoch, "batch": position.batch,
                 "trained_tokens": position.trained_tokens, "reason": reason}
        checkpoints.save_checkpoint(target, model, optimizer, scheduler, state)
        if self.store.add_checkpoint(self.job.id, self.job.attempt, position.step, str(target),
                                     {"step": position.step, **metrics}) is None:
            raise Superseded(self.job.id)
        for old in self.store.drop_old_checkpoints(self.job.id, KEEP_CHECKPOINTS):
            if Path(old) != target:
                checkpoints.remove_folder(Path(old))

    def _resume(self, model: Any, optimizer: Any, scheduler: Any) -> Position:
        latest = self.store.latest_checkpoint(self.job.id)
        if latest is None:
            return Position()
        state = checkpoints.load_checkpoint(Path(latest.path), model, optimizer, scheduler)
        position = Position(step=state["step"], epoch=state["epoch"], batch=state["batch"],
                            trained_tokens=state["trained_tokens"])
        self._event(f"Resumed from the checkpoint at step {position.step}.", data={"step": position.step})
        return position

    def _finish(self, model: Any, tokenizer: Any, position: Position) -> None:
        """Save the finished model. The job is not marked succeeded here: the server does that once
        it serves the model, so a client never sees a succeeded job whose model it cannot call."""
        target = self.layout.model_dir(self.job.id)
        marker = {"job": self.job.id, "attempt": self.job.attempt, "base": self.job.model, "kind": self.kind,
                  "task": plan.served_task(self.kind), "labels": self.labels or None}
        if self.job.method["type"] == "lora" and (self.kind == plan.GENERATOR
                                                  or plan.encoder_lora_modules(model.base_model.model)):
            checkpoints.save_adapter(target, model, marker)
        else:
            checkpoints.save_model(target, model, tokenizer, marker)
        self._update(step=position.step, trained_tokens=position.trained_tokens,
                     events=[NewEvent(f"Training finished at step {position.step}; the model is saved.")])
