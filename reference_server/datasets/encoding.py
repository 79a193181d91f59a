"""Turn data set records into token ids and loss masks, for training and for evaluation.

Training and evaluation share these encoders so the loss a job reports while it trains and
the loss `/v1/evaluations` measures afterwards are the same quantity:

- chat: the conversation rendered with the model's own chat template (the one serving uses),
  loss on the assistant turns only, including the end-of-turn token so the model learns to stop;
- prompt/completion: the raw prompt followed by the completion and the end-of-sequence token,
  loss on the completion and that token only (the shape `/v1/completions` serves);
- classification: the text (and its `text_pair`, read together as a cross-encoder reads a query
  and a passage) and the index of its label.

Assistant and completion tokens are found through character offsets of the rendered text
rather than by tokenizing pieces separately, so a token that straddles a boundary is never
double counted and the ids are exactly those the model sees at inference.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

IGNORE_INDEX = -100


@dataclass
class Encoded:
    """One example: token ids and, per token, the id to predict there (IGNORE_INDEX = no loss),
    or for classification a single class index in `label`."""

    input_ids: list[int]
    labels: list[int]
    label: int = -1

    @property
    def target_tokens(self) -> int:
        return sum(1 for x in self.labels if x != IGNORE_INDEX)


def _render(tokenizer: Any, messages: Sequence[Mapping[str, str]], generation_prompt: bool) -> str:
    text = tokenizer.apply_chat_template(
        [{"role": m["role"], "content": m["content"]} for m in messages],
        tokenize=False,
        add_generation_prompt=generation_prompt,
    )
    return str(text)


def _mask_by_spans(tokenizer: Any, text: str, spans: Sequence[tuple[int, int]], max_length: int,
                   add_special_tokens: bool) -> Encoded:
    """Tokenize `text`; a token is a target when it starts inside one of the character `spans`."""
    enc = tokenizer(text, add_special_tokens=add_special_tokens, return_offsets_mapping=True)
    ids: list[int] = list(enc["input_ids"])[:max_length]
    offsets = list(enc["offset_mapping"])[:max_length]
    labels = [IGNORE_INDEX] * len(ids)
    for i, (start, end) in enumerate(offsets):
        if end > start and any(lo <= start < hi for lo, hi in spans):
            labels[i] = ids[i]
    return Encoded(input_ids=ids, labels=labels)


def encode_chat(tokenizer: Any, messages: Sequence[Mapping[str, str]], max_length: int) -> Encoded:
    """A conversation with loss on every assistant turn.

    Needs a chat template that renders a conversation's prefix as a prefix of the whole (true of
    ChatML, Llama and most others); otherwise the assistant turns cannot be located and a
    ValueError says so.
    """
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError("this model has no chat template; use prompt/completion data instead")
    full = _render(tokenizer, messages, generation_prompt=False)
    spans: list[tuple[int, int]] = []
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        before = _render(tokenizer, messages[:i], generation_prompt=True) if i else ""
        through = _render(tokenizer, messages[: i + 1], generation_prompt=False)
        if not (full.startswith(through) and through.startswith(before)):
            raise ValueError("the model's chat template does not render conversations incrementally, "
                             "so assistant turns cannot be located; use prompt/completion data instead")
        spans.append((len(before), len(through)))
    return _mask_by_spans(tokenizer, full, spans, max_length, add_special_tokens=False)


def encode_prompt_completion(tokenizer: Any, prompt: str, completion: str, max_length: int) -> Encoded:
    """`prompt + completion + eos`, with loss on the completion and the end-of-sequence token."""
    eos = tokenizer.eos_token or ""
    text = prompt + completion + eos
    return _mask_by_spans(tokenizer, text, [(len(prompt), len(text))], max_length, add_special_tokens=True)


def encode_generation_record(tokenizer: Any, record: Mapping[str, Any], max_length: int) -> Encoded:
    if "messages" in record:
        return encode_chat(tokenizer, record["messages"], max_length)
    return encode_prompt_completion(tokenizer, record["prompt"], record["completion"], max_length)


def encode_classification(tokenizer: Any, text: str, label: int, max_length: int,
                          text_pair: str | None = None) -> Encoded:
    """The text, or the pair with the tokenizer's separator between them (cut to `max_length`,
    the longer text first), as classification serves it."""
    ids = list(tokenizer(text, text_pair, truncation=True, max_length=max_length)["input_ids"])
    return Encoded(input_ids=ids, labels=[], label=label)


def pad_id(tokenizer: Any) -> int:
    for candidate in (tokenizer.pad_token_id, tokenizer.eos_token_id, 0):
        if candidate is not None:
            return int(candidate)
    return 0


def collate(examples: Sequence[Encoded], pad: int) -> dict[str, Any]:
    """Right-padded tensors: input_ids, attention_mask, and labels (per token, or per example)."""
    import torch

    width = max(len(e.input_ids) for e in examples)
    ids = torch.full((len(examples), width), pad, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for row, example in enumerate(examples):
        n = len(example.input_ids)
        ids[row, :n] = torch.tensor(example.input_ids, dtype=torch.long)
        mask[row, :n] = 1
    batch: dict[str, Any] = {"input_ids": ids, "attention_mask": mask}
    if examples[0].labels:
        labels = torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long)
        for row, example in enumerate(examples):
            labels[row, : len(example.labels)] = torch.tensor(example.labels, dtype=torch.long)
        batch["labels"] = labels
    else:
        batch["labels"] = torch.tensor([e.label for e in examples], dtype=torch.long)
    return batch


def token_batches(examples: Sequence[Encoded], max_tokens: int = 4096, max_items: int = 16) -> Iterator[list[Encoded]]:
    """Consecutive batches whose padded size (items x longest) stays within `max_tokens`, so scoring
    long conversations never materialises a logits tensor of many gigabytes (one row per token
    and vocabulary entry)."""
    batch: list[Encoded] = []
    longest = 0
    for example in examples:
        width = max(longest, len(example.input_ids))
        if batch and (len(batch) >= max_items or width * (len(batch) + 1) > max_tokens):
            yield batch
            batch, width = [], len(example.input_ids)
        batch.append(example)
        longest = width
    if batch:
        yield batch


def token_losses(model: Any, batch: Mapping[str, Any]) -> tuple[Any, Any, Any]:
    """Per example: summed negative log-likelihood of its target tokens, their count, and how many
    were the model's top prediction. The causal shift (token t predicts t + 1) is applied here."""
    import torch

    targets = batch["labels"][:, 1:]
    if "logits_to_keep" in inspect.signature(model.forward).parameters:
        # Only the positions that predict a target token need the vocabulary-wide projection:
        # for short completions after long prompts that is a small part of the work.
        keep = (targets != IGNORE_INDEX).any(dim=0).nonzero().squeeze(-1)
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                       logits_to_keep=keep).logits.float()
        targets = targets[:, keep]
    else:
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        logits = logits[:, :-1, :].float()
    valid = targets != IGNORE_INDEX
    safe = targets.clamp(min=0)
    logprobs = torch.log_softmax(logits, dim=-1).gather(-1, safe.unsqueeze(-1)).squeeze(-1)
    nll = -(logprobs * valid).sum(dim=1)
    correct = ((logits.argmax(dim=-1) == targets) & valid).sum(dim=1)
    return nll, valid.sum(dim=1), correct
