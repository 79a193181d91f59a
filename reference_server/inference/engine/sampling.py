"""Per-request sampling parameters and the batched sampler that applies them.

One decode step yields a logits row per running sequence, each with its own parameters.
The sampler handles the whole batch with a few tensor operations (penalties and EOS masking
touch only the rows that ask for them) and draws one uniform number per row: from the
request's own seeded `torch.Generator` when it has a seed, so a seeded request is
reproducible whatever else shares the batch.

Log-probabilities, when a request asks for them, are the raw log-softmax of the model's
logits, taken before penalties, biases, temperature and truncation (vLLM's default), for the
whole batch at once; the alternatives come from one `torch.topk` over the rows that want them.

Top-k/top-p look only at the best candidates (`torch.topk`) instead of sorting the whole
vocabulary, which for a 49k vocabulary is over ten times slower; top-p falls back to a full
sort for a row whose candidates do not cover `top_p` of the probability mass, so the result
is always exact.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

# Candidate pool for top-p when no top-k narrows it further.
_TOP_P_CANDIDATES = 256
_SEED_MASK = (1 << 64) - 1


@dataclass(frozen=True)
class TokenLogprob:
    """A token's log-probability and its `top` alternatives, most likely first."""

    token_id: int
    logprob: float
    top: tuple[tuple[int, float], ...] = ()


@dataclass
class SamplingParams:
    """How one request picks its tokens. `temperature == 0` means greedy (deterministic).

    `logprobs`: None computes none; k >= 0 gives each generated token's logprob and its k most
    likely alternatives. `prompt_logprobs` does the same for the prompt's tokens (from the
    prefill). `max_tokens == 0` scores the prompt without generating (needs prompt_logprobs).
    """

    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int | None = None
    min_p: float = 0.0
    stop: list[str] = field(default_factory=list)
    stop_token_ids: list[int] = field(default_factory=list)
    seed: int | None = None
    min_tokens: int = 0
    ignore_eos: bool = False
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    repetition_penalty: float = 1.0
    logit_bias: dict[int, float] = field(default_factory=dict)
    logprobs: int | None = None
    prompt_logprobs: int | None = None

    def __post_init__(self) -> None:
        if self.max_tokens < 0 or (self.max_tokens == 0 and self.prompt_logprobs is None):
            raise ValueError(f"max_tokens must be >= 1 (0 only to score the prompt), got {self.max_tokens}")
        if not 0 <= self.min_p <= 1:
            raise ValueError(f"min_p must be in [0, 1], got {self.min_p}")
        if not (math.isfinite(self.repetition_penalty) and self.repetition_penalty > 0):
            raise ValueError(f"repetition_penalty must be > 0, got {self.repetition_penalty}")
        for name in ("logprobs", "prompt_logprobs"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"{name} must be >= 0, got {value}")
        if not (math.isfinite(self.temperature) and self.temperature >= 0):
            raise ValueError(f"temperature must be a finite number >= 0, got {self.temperature}")
        if not (0 < self.top_p <= 1):
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k is not None and self.top_k < 1:
            raise ValueError(f"top_k must be >= 1 (or None for no limit), got {self.top_k}")
        if not 0 <= self.min_tokens <= self.max_tokens:
            raise ValueError(
                f"min_tokens must be in [0, max_tokens={self.max_tokens}], got {self.min_tokens}"
            )
        for name in ("presence_penalty", "frequency_penalty"):
            value = getattr(self, name)
            if not (math.isfinite(value) and -2 <= value <= 2):
                raise ValueError(f"{name} must be in [-2, 2], got {value}")
        if any(not isinstance(s, str) or s == "" for s in self.stop):
            raise ValueError("stop sequences must be non-empty strings")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    @property
    def penalized(self) -> bool:
        return self.presence_penalty != 0 or self.frequency_penalty != 0

    @property
    def edits_logits(self) -> bool:
        """Whether anything besides temperature and truncation changes this row's logits."""
        return self.penalized or self.repetition_penalty != 1 or bool(self.logit_bias)

    def make_generator(self, device: torch.device | str = "cpu") -> torch.Generator | None:
        """A generator seeded from `seed` (any int), or None when unseeded or greedy."""
        if self.seed is None or self.greedy:
            return None
        gen = torch.Generator(device=device)
        gen.manual_seed(self.seed & _SEED_MASK)
        return gen


@dataclass
class RowState:
    """What the sampler needs to know about one sequence besides its logits."""

    params: SamplingParams
    output_ids: list[int]
    generator: torch.Generator | None
    prompt_ids: Sequence[int] = ()


def sample(logits: torch.Tensor, rows: Sequence[RowState], eos_ids: Sequence[int]) -> list[int]:
    """Pick the next token for every row of `logits` (`[rows, vocab]`); `logits` is left unchanged."""
    edits = any(r.params.edits_logits or len(r.output_ids) < r.params.min_tokens for r in rows)
    logits = logits.to(torch.float32, copy=edits)
    _apply_penalties(logits, rows)
    _apply_logit_bias(logits, rows)
    _mask_early_stop(logits, rows, eos_ids)
    chosen = logits.argmax(dim=-1)
    sampled = [i for i, r in enumerate(rows) if not r.params.greedy]
    if sampled:
        picks = _sample_rows(logits[sampled], [rows[i] for i in sampled])
        chosen[torch.tensor(sampled, device=chosen.device)] = picks
    return [int(t) for t in chosen.tolist()]


def chosen_logprobs(logits: torch.Tensor, rows: Sequence[RowState], chosen: Sequence[int]) -> list[TokenLogprob | None]:
    """For the rows that ask (`params.logprobs` set): the raw log-softmax of the chosen token and
    of the row's top alternatives; None for the others. `logits` is the model's, unedited."""
    wanted = [i for i, r in enumerate(rows) if r.params.logprobs is not None]
    out: list[TokenLogprob | None] = [None] * len(rows)
    if not wanted:
        return out
    index = torch.tensor(wanted, device=logits.device)
    tokens = torch.tensor([chosen[i] for i in wanted], device=logits.device)
    found = ranked_logprobs(logits[index], tokens, [rows[i].params.logprobs or 0 for i in wanted])
    for i, item in zip(wanted, found):
        out[i] = item
    return out


def ranked_logprobs(logits: torch.Tensor, tokens: torch.Tensor, ks: Sequence[int]) -> list[TokenLogprob]:
    """Row i: log-softmax of `tokens[i]` under `logits[i]` and the `ks[i]` most likely tokens.

    The chosen token's value and the alternatives' come from the same tensor, so a greedy
    token's logprob equals the largest alternative exactly (clients test it with `==`).
    """
    logprobs = torch.log_softmax(logits.to(torch.float32), dim=-1)
    values = logprobs.gather(1, tokens.unsqueeze(1)).squeeze(1).tolist()
    k = min(max(ks, default=0), logprobs.shape[-1])
    top_v: list[list[float]] = [[] for _ in ks]
    top_i: list[list[int]] = [[] for _ in ks]
    if k > 0:
        v, i = logprobs.topk(k, dim=-1)
        top_v, top_i = v.tolist(), i.tolist()
    ids = tokens.tolist()
    return [
        TokenLogprob(int(ids[r]), float(values[r]), tuple(zip(top_i[r][: ks[r]], top_v[r][: ks[r]])))
        for r in range(len(ks))
    ]


def _counts(seqs: Sequence[Sequence[int]], vocab: int, device: torch.device) -> torch.Tensor:
    """`[len(seqs), vocab]` token counts, built with one scatter for every row together."""
    counts = torch.zeros(len(seqs), vocab, dtype=torch.float32, device=device)
    lengths = torch.tensor([len(s) for s in seqs], device=device)
    if int(lengths.sum()) == 0:
        return counts
    flat = torch.tensor([t for s in seqs for t in s], dtype=torch.long, device=device).clamp(0, vocab - 1)
    rows = torch.repeat_interleave(torch.arange(len(seqs), device=device), lengths)
    counts.index_put_((rows, flat), torch.ones_like(flat, dtype=torch.float32), accumulate=True)
    return counts


def _apply_penalties(logits: torch.Tensor, rows: Sequence[RowState]) -> None:
    """OpenAI's presence/frequency penalties over the generated tokens, and the multiplicative
    repetition penalty (as transformers and vLLM apply it) over prompt and generated tokens."""
    vocab = logits.shape[-1]
    pen = [i for i, r in enumerate(rows) if r.params.penalized and r.output_ids]
    if pen:
        counts = _counts([rows[i].output_ids for i in pen], vocab, logits.device)
        freq = torch.tensor([rows[i].params.frequency_penalty for i in pen], device=logits.device).unsqueeze(1)
        pres = torch.tensor([rows[i].params.presence_penalty for i in pen], device=logits.device).unsqueeze(1)
        index = torch.tensor(pen, device=logits.device)
        logits[index] -= freq * counts + pres * (counts > 0).to(logits.dtype)
    rep = [i for i, r in enumerate(rows) if r.params.repetition_penalty != 1]
    if rep:
        seen = _counts([[*rows[i].prompt_ids, *rows[i].output_ids] for i in rep], vocab, logits.device) > 0
        p = torch.tensor([rows[i].params.repetition_penalty for i in rep], device=logits.device).unsqueeze(1)
        index = torch.tensor(rep, device=logits.device)
        sub = logits[index]
        logits[index] = torch.where(seen, torch.where(sub > 0, sub / p, sub * p), sub)


def _apply_logit_bias(logits: torch.Tensor, rows: Sequence[RowState]) -> None:
    """Add each row's `logit_bias` (token id -> bias), every row in one indexed add."""
    pairs = [(i, t, b) for i, r in enumerate(rows) for t, b in r.params.logit_bias.items()]
    if not pairs:
        return
    r_idx = torch.tensor([p[0] for p in pairs], device=logits.device)
    t_idx = torch.tensor([p[1] for p in pairs], device=logits.device)
    bias = torch.tensor([p[2] for p in pairs], dtype=logits.dtype, device=logits.device)
    logits.index_put_((r_idx, t_idx), bias, accumulate=True)


def _mask_early_stop(logits: torch.Tensor, rows: Sequence[RowState], eos_ids: Sequence[int]) -> None:
    """Forbid EOS and the row's stop tokens for rows that have not reached `min_tokens` yet."""
    pairs = [
        (i, t)
        for i, r in enumerate(rows)
        if len(r.output_ids) < r.params.min_tokens
        for t in {*eos_ids, *r.params.stop_token_ids}
    ]
    if not pairs:
        return
    r_idx = torch.tensor([p[0] for p in pairs], device=logits.device)
    t_idx = torch.tensor([p[1] for p in pairs], device=logits.device)
    logits[r_idx, t_idx] = float("-inf")


def _uniforms(rows: Sequence[RowState], device: torch.device) -> torch.Tensor:
    draws = [
        torch.rand(1, generator=r.generator, device=r.generator.device) if r.generator is not None else None
        for r in rows
    ]
    unseeded = [i for i, d in enumerate(draws) if d is None]
    if unseeded:
        shared = torch.rand(len(unseeded))
        for j, i in enumerate(unseeded):
            draws[i] = shared[j : j + 1]
    return torch.cat([d.cpu() for d in draws if d is not None]).to(device)


def _pick(probs: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Inverse-CDF draw: the first index whose cumulative (unnormalised) mass exceeds u * total."""
    cdf = probs.cumsum(dim=-1)
    target = (u * cdf[:, -1]).unsqueeze(1)
    idx = torch.searchsorted(cdf, target, right=True).squeeze(1)
    return idx.clamp(max=probs.shape[-1] - 1)


def _sample_rows(logits: torch.Tensor, rows: Sequence[RowState]) -> torch.Tensor:
    """Temperature, top-k and top-p sampling for rows that are not greedy."""
    device = logits.device
    temps = torch.tensor([r.params.temperature for r in rows], dtype=logits.dtype, device=device)
    probs = torch.softmax(logits / temps.unsqueeze(1), dim=-1)
    min_p = torch.tensor([r.params.min_p for r in rows], dtype=probs.dtype, device=device)
    if bool((min_p > 0).any()):
        floor = min_p.unsqueeze(1) * probs.max(dim=-1, keepdim=True).values
        probs = probs.masked_fill(probs < floor, 0.0)
    u = _uniforms(rows, device)
    narrow = [i for i, r in enumerate(rows) if r.params.top_k is not None or r.params.top_p < 1]
    if not narrow:
        return _pick(probs, u)
    picks = torch.empty(len(rows), dtype=torch.long, device=device)
    plain = [i for i in range(len(rows)) if i not in set(narrow)]
    if plain:
        picks[plain] = _pick(probs[plain], u[plain])
    picks[narrow] = _pick_narrowed(probs[narrow], [rows[i].params for i in narrow], u[narrow])
    return picks


def _pick_narrowed(probs: torch.Tensor, params: Sequence[SamplingParams], u: torch.Tensor) -> torch.Tensor:
    """Top-k, then top-p over what top-k kept (renormalised), as transformers' warpers do."""
    device = probs.device
    vocab = probs.shape[-1]
    has_k = [p.top_k is not None for p in params]
    ks = [min(p.top_k, vocab) if p.top_k is not None else vocab for p in params]
    pool = min(vocab, max(k if hk else _TOP_P_CANDIDATES for k, hk in zip(ks, has_k)))
    cand, index = probs.topk(pool, dim=-1)
    pool_mass = cand.sum(dim=-1)
    ranks = torch.arange(pool, device=device).unsqueeze(0)
    cand = cand.masked_fill(ranks >= torch.tensor(ks, device=device).unsqueeze(1), 0.0)
    top_p = torch.tensor([p.top_p for p in params], dtype=probs.dtype, device=device)
    # Top-p measures mass within the top-k set when there is one, else within the whole vocabulary.
    total = torch.where(torch.tensor(has_k, device=device), cand.sum(dim=-1), torch.ones_like(top_p))
    cand = _apply_top_p(cand, top_p * total)
    chosen = index.gather(1, _pick(cand, u).unsqueeze(1)).squeeze(1)

    # A top-p-only row whose candidates hold less than top_p of the mass needs the full ranking.
    deficient = (pool_mass < top_p).tolist()
    short = [i for i, hk in enumerate(has_k) if not hk and pool < vocab and deficient[i]]
    if short:
        ranked, order = probs[short].sort(dim=-1, descending=True)
        ranked = _apply_top_p(ranked, top_p[short])
        chosen[short] = order.gather(1, _pick(ranked, u[short]).unsqueeze(1)).squeeze(1)
    return chosen


def _apply_top_p(sorted_probs: torch.Tensor, threshold: torch.Tensor) -> torch.Tensor:
    """Zero the tail of descending `sorted_probs` past the smallest prefix whose mass reaches
    `threshold` (per row); the most likely token always stays."""
    before = sorted_probs.cumsum(dim=-1) - sorted_probs
    return sorted_probs.masked_fill(before >= threshold.unsqueeze(1), 0.0)
