"""Padding-free encoder batches: a batch of texts as one row, each text attending only to itself.

A padded batch is as wide as its longest text, so with sentences of mixed length a third or
more of an encoder's work goes to pad tokens (the benchmark's sentences, 11 to 44 tokens, fill
63% of a padded batch of 16). Packed, the texts sit side by side in one row of
`sum(lengths)` tokens, with positions restarting at 0 for each; the linear layers, which are
most of the work, then see no padding at all. Attention, the only place where tokens meet,
lays the texts out as padded rows for a moment (`_attend`, installed by `install` as the
model's attention wherever a forward passes `packed_layout=`), with a mask over the padding,
so no text ever sees another and the vectors are those of the texts alone.

Not every encoder can be fed this way (positions it computes itself, no `position_ids`
argument, attention that is not SDPA), so `packs_like_padding` checks a model once, on real
texts against its padded forward, and the batcher packs only where they agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

ATTENTION = "maas_packed"
# How far packed vectors may stray from padded ones (cosine) for a model to be packed.
AGREEMENT = 1e-4
_PROBES = ("A short probe.", "A somewhat longer probe sentence, with a clause or two, to embed.", "Hi")


def install(model: Any) -> bool:
    """Make `_attend` the model's attention where a forward passes `packed_layout=`, every
    other forward keeping SDPA; False (nothing changed) if the model does not use SDPA."""
    from reference_server.inference.engine import attention

    return attention.install(model, ATTENTION, "packed_layout", _attend)


def uninstall(model: Any) -> None:
    """Back to plain SDPA (a model that did not pass the check)."""
    if getattr(model.config, "_attn_implementation", None) == ATTENTION:
        model.set_attn_implementation("sdpa")


@dataclass(frozen=True)
class PackedLayout:
    """Where each packed token goes when attention lays the texts out as rows `[texts, width]`
    (built once per forward; every layer reuses it)."""

    lengths: list[int]
    to_rows: torch.Tensor  # [texts * width]: the packed position of each row position (padding: 0)
    to_packed: torch.Tensor  # [tokens]: the row position of each packed token
    keys: torch.Tensor  # [texts, 1, 1, width]: True at real tokens

    @classmethod
    def of(cls, lengths: list[int], device: torch.device) -> PackedLayout:
        width = max(lengths)
        sizes = torch.tensor(lengths)
        starts = torch.cumsum(sizes, 0) - sizes
        column = torch.arange(width)
        real = column[None, :] < sizes[:, None]
        to_rows = torch.where(real, starts[:, None] + column[None, :], 0).reshape(-1)
        to_packed = (torch.arange(len(lengths))[:, None] * width + column[None, :])[real]
        return cls(lengths, to_rows.to(device), to_packed.to(device), real[:, None, None, :].to(device))


def _attend(layout: PackedLayout, module: Any, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
            scaling: float | None) -> torch.Tensor:
    # query, key, value: [1, heads, tokens, head_dim] -> [texts, heads, width, head_dim] and back:
    # attention alone sees the rows padded (a few small copies); the linear layers never do.
    texts, width = len(layout.lengths), layout.keys.shape[-1]

    def rows(t: torch.Tensor) -> torch.Tensor:
        heads, dim = t.shape[1], t.shape[-1]
        return t[0].index_select(1, layout.to_rows).view(heads, texts, width, dim).transpose(0, 1)

    attended = F.scaled_dot_product_attention(rows(query), rows(key), rows(value), attn_mask=layout.keys,
                                              scale=scaling)
    heads, dim = attended.shape[1], attended.shape[-1]
    packed = attended.transpose(0, 1).reshape(heads, texts * width, dim).index_select(1, layout.to_packed)
    return packed.transpose(0, 1).unsqueeze(0)


def packed_inputs(rows: list[list[int]], device: torch.device) -> dict[str, Any]:
    """The keyword arguments of one packed forward over `rows` (token ids with special tokens)."""
    lengths = [len(r) for r in rows]
    ids = torch.tensor([t for r in rows for t in r], dtype=torch.long, device=device)[None]
    positions = torch.cat([torch.arange(n) for n in lengths]).to(device)[None]
    return {"input_ids": ids, "position_ids": positions, "token_type_ids": torch.zeros_like(ids),
            "packed_layout": PackedLayout.of(lengths, device)}


def mean_pool_packed(hidden: torch.Tensor, lengths: list[int]) -> torch.Tensor:
    """Per-text mean of a packed forward's hidden states `[1, tokens, dim]` -> `[texts, dim]`."""
    owner = torch.repeat_interleave(torch.arange(len(lengths), device=hidden.device),
                                    torch.tensor(lengths, device=hidden.device))
    sums = torch.zeros(len(lengths), hidden.shape[-1], dtype=hidden.dtype, device=hidden.device)
    sums.index_add_(0, owner, hidden[0])
    return sums / torch.tensor(lengths, dtype=hidden.dtype, device=hidden.device)[:, None]


def mean_pool_padded(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-row mean of a padded forward's hidden states over the real tokens."""
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)


def padded_inputs(rows: list[list[int]], pad_id: int, device: torch.device) -> dict[str, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r, dtype=torch.long)
        mask[i, : len(r)] = 1
    return {"input_ids": ids.to(device), "attention_mask": mask.to(device)}


def packs_like_padding(model: Any, tokenizer: Any, pad_id: int, device: torch.device) -> bool:
    """Whether packed forwards of `model` give the padded forward's vectors (installing the
    packed attention on the way; removed again when they do not)."""
    if not install(model):
        return False
    rows = [list(tokenizer(t, add_special_tokens=True)["input_ids"]) for t in _PROBES]
    try:
        with torch.inference_mode():
            padded = padded_inputs(rows, pad_id, device)
            reference = mean_pool_padded(model(**padded).last_hidden_state, padded["attention_mask"])
            packed = mean_pool_packed(model(**packed_inputs(rows, device)).last_hidden_state, [len(r) for r in rows])
        agree = bool((1 - F.cosine_similarity(reference.float(), packed.float(), dim=-1)).max() < AGREEMENT)
    except Exception:  # noqa: BLE001 - a model that cannot take packed inputs is batched padded
        agree = False
    if not agree:
        uninstall(model)
    return agree
