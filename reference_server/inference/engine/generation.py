"""Continuous (iteration-level) batching for one generative model.

Running `model.generate()` per request decodes one sequence per forward pass and leaves most
of the CPU idle: a small model decodes several times more tokens per second when eight
sequences share each forward. This engine keeps one running batch and, at every step:

1. drops sequences that were cancelled or finished, freeing their slots;
2. admits waiting requests into the free slots and prefills them together (left-padded,
   bounded by `max_batch_tokens`), then merges their KV cache into the running batch;
3. decodes one token for every running sequence with a single forward pass.

Before each sampling, rows that carry a grammar constraint (structured outputs, tool calls)
get their forbidden tokens masked in one batched step (`structured.apply_constraints`), on a
copy of the logits: free rows in the same batch are untouched, and logprobs stay the model's
raw ones for every row. Grammars are compiled before submission, off this thread, so a slow grammar
never holds up the batch.

The loop runs on its own thread so the asyncio event loop never blocks on torch; results
travel back per request through `loop.call_soon_threadsafe` into an `asyncio.Queue`. A
failure while prefilling, sampling or detokenizing fails only the requests concerned; a
failed decode forward fails the running batch (its cache is then inconsistent) and the loop
carries on with the next requests.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import logging
import time
from collections import deque
from collections.abc import AsyncGenerator, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import torch
from transformers import DynamicCache

from reference_server import logs
from reference_server.errors import InvalidRequest
from reference_server.inference.engine.detokenize import IncrementalDetokenizer
from reference_server.inference.engine.errors import EngineStoppedError, GenerationError, QueueFullError
from reference_server.inference.engine.kvcache import (
    PaddedBatch,
    check_mergeable,
    left_padded,
    positions_from_mask,
)
from reference_server.inference.engine.sampling import (
    RowState,
    SamplingParams,
    TokenLogprob,
    chosen_logprobs,
    ranked_logprobs,
    sample,
)
from reference_server.inference.engine.worker import EngineThread

if TYPE_CHECKING:
    from reference_server.inference.loading import LoadedModel
    from reference_server.inference.structured import RowConstraint

__all__ = [
    "EngineObserver",
    "EngineStoppedError",
    "GenerationEngine",
    "GenerationError",
    "GenerationHandle",
    "QueueFullError",
    "RequestReport",
    "StepReport",
    "TokenEvent",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TokenEvent:
    """New output of one request: text to append, the tokens behind it, and (on the last
    event only) why it finished: "stop" (EOS, stop token or stop sequence) or "length".

    `logprobs` (one per token, when asked for) are the raw logprobs of those tokens. The first
    event of a request that asked for `prompt_logprobs` carries them: one per prompt token,
    None for the first (nothing precedes it). A prompt scored with `max_tokens == 0` yields a
    single event with no tokens.
    """

    text: str
    token_ids: list[int]
    finish_reason: str | None = None
    logprobs: list[TokenLogprob] | None = None
    prompt_logprobs: list[TokenLogprob | None] | None = None


@dataclass(frozen=True)
class StepReport:
    """One forward pass: a prefill of newly admitted requests, or a decode step."""

    kind: Literal["prefill", "decode"]
    batch_size: int
    tokens: int
    duration_s: float


@dataclass(frozen=True)
class RequestReport:
    """A request that left the engine. `finish_reason` is "stop", "length", "cancelled",
    "error" or "aborted" (engine stopped)."""

    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    queue_time_s: float | None
    time_to_first_token_s: float | None
    inter_token_latencies_s: list[float]
    duration_s: float


class EngineObserver:
    """Receives engine measurements, on the engine thread; override what you need.

    Keep the callbacks quick: they run between forward passes. Exceptions are logged and
    ignored.
    """

    def on_step(self, report: StepReport) -> None:
        """Called after every forward pass."""

    def on_request_done(self, report: RequestReport) -> None:
        """Called once per request when it leaves the engine, whatever the reason."""


def _naming(sequences: Sequence[_Sequence]) -> dict[str, str]:
    """Log `extra` naming the requests a failure on the engine thread affected."""
    return {"request_id": ",".join(s.request_id or "-" for s in sequences)}


# Queued to a request's iterator to end it without an event (the request was cancelled).
_END = object()


class _Sequence:
    """Engine-side state of one request."""

    def __init__(
        self,
        prompt_ids: list[int],
        params: SamplingParams,
        detokenizer: IncrementalDetokenizer,
        loop: asyncio.AbstractEventLoop,
        constraint: RowConstraint | None = None,
    ) -> None:
        self.prompt_ids = prompt_ids
        self.constraint = constraint
        self.params = params
        self.output_ids: list[int] = []
        self.row = RowState(params=params, output_ids=self.output_ids, generator=params.make_generator(),
                            prompt_ids=prompt_ids)
        self.prompt_logprobs: list[TokenLogprob | None] | None = None
        self.detokenizer = detokenizer
        self.loop = loop
        self.queue: asyncio.Queue[Any] = asyncio.Queue()
        self.cancelled = False
        self.finish_reason: str | None = None
        self.submitted_time = time.monotonic()
        self.scheduled_time: float | None = None
        self.token_times: list[float] = []
        self.request_id = logs.request_id.get()  # submitted from the request's task

    @property
    def queue_time(self) -> float | None:
        """Arrival to admission into the running batch (the start of its prefill)."""
        return None if self.scheduled_time is None else self.scheduled_time - self.submitted_time

    @property
    def time_to_first_token(self) -> float | None:
        return self.token_times[0] - self.submitted_time if self.token_times else None

    def deliver(self, item: Any) -> None:
        try:
            self.loop.call_soon_threadsafe(self.queue.put_nowait, item)
        except RuntimeError:  # the caller's event loop is closed: nobody is listening any more
            self.cancelled = True


class GenerationHandle:
    """A submitted request: iterate it for `TokenEvent`s, `cancel()` it to stop early.

    Closing the iterator early (or dropping the handle) cancels the request. Timestamps are
    `time.monotonic()` values, None until reached.
    """

    def __init__(self, seq: _Sequence, wake: Callable[[], None]) -> None:
        self._seq = seq
        self._wake = wake

    def cancel(self) -> None:
        """Stop generating; the sequence leaves the batch at the next step. Idempotent."""
        seq = self._seq
        if seq.finish_reason is None and not seq.cancelled:
            seq.cancelled = True
            self._wake()

    def __aiter__(self) -> AsyncGenerator[TokenEvent, None]:  # noqa: PYI058 - callers may aclose() it
        return self._events()

    async def _events(self) -> AsyncGenerator[TokenEvent, None]:
        try:
            while True:
                item = await self._seq.queue.get()
                if item is _END:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
                if item.finish_reason is not None:
                    return
        finally:
            self.cancel()

    def __del__(self) -> None:
        # Only a flag: taking the engine's lock from a garbage-collection callback could deadlock.
        if self._seq.finish_reason is None:
            self._seq.cancelled = True

    @property
    def prompt_tokens(self) -> int:
        return len(self._seq.prompt_ids)

    @property
    def completion_tokens(self) -> int:
        return len(self._seq.output_ids)

    @property
    def finish_reason(self) -> str | None:
        return self._seq.finish_reason

    @property
    def first_token_time(self) -> float | None:
        times = self._seq.token_times
        return times[0] if times else None

    @property
    def queue_time(self) -> float | None:
        return self._seq.queue_time


class GenerationEngine(EngineThread):
    """Schedules every request for one generative model into a shared, continuously
    refilled decode batch. See the module docstring for the step structure."""

    def __init__(
        self,
        loaded: LoadedModel,
        *,
        max_running: int = 16,
        max_batch_tokens: int = 4096,
        max_queued: int = 256,
    ) -> None:
        if max_running < 1 or max_batch_tokens < 1 or max_queued < 0:
            raise ValueError("max_running and max_batch_tokens must be >= 1 and max_queued >= 0")
        super().__init__(f"generation-{loaded.spec.id}")
        self.max_running = max_running
        self.max_batch_tokens = max_batch_tokens
        self.max_queued = max_queued
        self._model = loaded.model
        self._config = loaded.model.config
        self._device = torch.device(loaded.device)
        self._context_length = loaded.context_length
        # Decoding runs on the engine thread; its own tokenizer copy never contends with the
        # routes encoding prompts on the event loop.
        self._tokenizer = copy.deepcopy(loaded.tokenizer)
        self._vocab_size = int(self._config.get_text_config().vocab_size)
        self._eos_ids = _eos_token_ids(loaded.model, loaded.tokenizer)
        self._eos_set = frozenset(self._eos_ids)
        pad = loaded.tokenizer.pad_token_id
        self._pad_id = int(pad) if pad is not None else (self._eos_ids[0] if self._eos_ids else 0)
        check_mergeable(DynamicCache(config=self._config))

        self._waiting: deque[_Sequence] = deque()
        self._running: list[_Sequence] = []
        self._batch: PaddedBatch | None = None
        self._observers: list[EngineObserver] = []
        self._counters = {
            "steps": 0,
            "prefills": 0,
            "last_batch_size": 0,
            "prompt_tokens": 0,
            "generated_tokens": 0,
            "finished": 0,
            "failed": 0,
            "cancelled": 0,
        }

    # ----- event loop side -----

    def add_observer(self, observer: EngineObserver) -> None:
        self._observers.append(observer)

    @property
    def eos_token_ids(self) -> list[int]:
        """The tokens that end a sequence (a grammar's stop tokens must be these)."""
        return list(self._eos_ids)

    def submit(
        self, prompt_ids: Sequence[int], params: SamplingParams, constraint: RowConstraint | None = None
    ) -> GenerationHandle:
        """Queue a request; call from the event loop that will iterate the handle.

        `constraint` (a fresh matcher of a compiled grammar) restricts every sampled token to
        what the grammar allows; the request ends when the grammar is complete.

        Raises QueueFullError when `max_running + max_queued` requests are already in, InvalidRequest
        for an unusable prompt, EngineStoppedError when the engine is not running.
        """
        if not self.accepting:
            raise EngineStoppedError("the generation engine is not running")
        ids = [int(t) for t in prompt_ids]
        if not ids:
            raise InvalidRequest("the prompt is empty: at least one token is needed", param="prompt")
        if len(ids) >= self._context_length:
            raise InvalidRequest(
                f"the prompt has {len(ids)} tokens but this model's context length is {self._context_length}; "
                "it must leave room for at least one generated token",
                param="prompt",
            )
        bad = [t for t in ids if not 0 <= t < self._vocab_size]
        if bad:
            raise InvalidRequest(
                f"token id {bad[0]} is outside this model's vocabulary (0..{self._vocab_size - 1})",
                param="prompt",
            )
        used = [*params.stop_token_ids, *params.logit_bias]
        if any(not 0 <= t < self._vocab_size for t in used):
            raise InvalidRequest(f"a stop or logit_bias token id is outside this model's vocabulary "
                                 f"(0..{self._vocab_size - 1})", param="logit_bias")
        loop = asyncio.get_running_loop()
        seq = _Sequence(ids, params, IncrementalDetokenizer(self._tokenizer, ids, params.stop), loop, constraint)
        with self._cond:
            in_flight = len(self._waiting) + len(self._running)
            if in_flight >= self.max_running + self.max_queued:
                raise QueueFullError(
                    f"{len(self._waiting)} requests are waiting and {len(self._running)} running"
                )
            self._waiting.append(seq)
            self._cond.notify()
        return GenerationHandle(seq, self._wake)

    def stats(self) -> dict[str, int]:
        """Current load and cumulative counters (a snapshot; safe to call from any thread)."""
        return {
            **self._counters,
            "running": len(self._running),
            "waiting": len(self._waiting),
            "max_running": self.max_running,
        }

    def _wake(self) -> None:
        with self._cond:
            self._cond.notify()

    # ----- engine thread -----

    def _run(self, threads: int) -> None:
        torch.set_num_threads(threads)
        with torch.inference_mode():
            while True:
                admitted: list[_Sequence] = []
                try:
                    self._drop_cancelled()
                    admissions = self._next_admissions()
                    if admissions is None:
                        break
                    admitted = admissions
                    if admitted:
                        self._prefill(admitted)
                    if self._running:
                        self._decode()
                except Exception as exc:  # a bug outside the per-request guards: fail what is in flight
                    in_flight = admitted + self._running
                    logger.exception("generation engine step failed", extra=_naming(in_flight))
                    self._running = []
                    self._batch = None  # its state may be half-updated
                    self._fail_all(in_flight, exc)
        self._abort_all()

    def _next_admissions(self) -> list[_Sequence] | None:
        """Wait for work; pop the waiting requests that fit now. None means: stop."""
        dropped: list[_Sequence] = []
        with self._cond:
            while not self._stopping and not self._waiting and not self._running:
                self._cond.wait()
            if self._stopping:
                return None
            if any(s.cancelled for s in self._waiting):
                dropped = [s for s in self._waiting if s.cancelled]
                self._waiting = deque(s for s in self._waiting if not s.cancelled)
            admitted: list[_Sequence] = []
            width = 0
            slots = self.max_running - len(self._running)
            while self._waiting and len(admitted) < slots:
                candidate = max(width, len(self._waiting[0].prompt_ids))
                if admitted and candidate * (len(admitted) + 1) > self.max_batch_tokens:
                    break
                admitted.append(self._waiting.popleft())
                width = candidate
        for seq in dropped:
            self._end_cancelled(seq)
        return admitted

    def _drop_cancelled(self) -> None:
        if any(s.cancelled for s in self._running):
            keep = [i for i, s in enumerate(self._running) if not s.cancelled]
            for s in self._running:
                if s.cancelled:
                    self._end_cancelled(s)
            self._retain(keep)

    def _retain(self, keep: list[int]) -> None:
        """Keep only the running rows `keep` (indices into the current batch)."""
        if len(keep) == len(self._running):
            return
        self._running = [self._running[i] for i in keep]
        if not keep or self._batch is None:
            self._batch = None
            self._running = []
            return
        self._batch.keep(keep)

    def _prefill(self, admitted: list[_Sequence]) -> None:
        start = time.monotonic()
        for seq in admitted:
            seq.scheduled_time = start
        # Logits are kept for the last `keep` positions only: one unless a prompt is scored.
        keep_positions = max((len(s.prompt_ids) for s in admitted if s.params.prompt_logprobs is not None),
                             default=1)
        try:
            ids, mask = left_padded([s.prompt_ids for s in admitted], self._pad_id, self._device)
            cache = DynamicCache(config=self._config)
            out = self._model(
                input_ids=ids,
                attention_mask=mask,
                position_ids=positions_from_mask(mask),
                cache=cache,
                use_cache=True,
                logits_to_keep=keep_positions,
            )
            logits = out.logits[:, -1, :]
            self._score_prompts(admitted, out.logits)
        except Exception as exc:
            logger.exception("prefill of %d requests failed", len(admitted), extra=_naming(admitted))
            self._fail_all(admitted, exc)
            return
        prompt_tokens = sum(len(s.prompt_ids) for s in admitted)
        self._counters["prefills"] += 1
        self._counters["prompt_tokens"] += prompt_tokens
        self._report_step(StepReport("prefill", len(admitted), prompt_tokens, time.monotonic() - start))

        generating = [i for i, s in enumerate(admitted) if s.params.max_tokens > 0]
        for seq in admitted:
            if seq.params.max_tokens == 0:  # scored only: the prompt's logprobs are the answer
                seq.deliver(TokenEvent("", [], "length", prompt_logprobs=seq.prompt_logprobs))
                self._finish(seq, "length")
        if not generating:
            return
        if len(generating) < len(admitted):
            logits = logits[torch.tensor(generating, device=logits.device)]
        seqs = [admitted[i] for i in generating]
        tokens, logprobs = self._sample(seqs, logits)
        kept = self._advance(seqs, tokens, logprobs)
        if not kept:
            return
        joined = PaddedBatch(
            cache=cache,
            mask=mask,
            positions=mask.sum(dim=1),
            next_tokens=_token_tensor([tokens[generating.index(i)] if i in generating else None
                                       for i in range(len(admitted))], self._device),
        )
        joined.keep([generating[i] for i in kept])
        if self._batch is None:
            self._batch = joined
        else:
            self._batch.merge(joined)
        self._running.extend(seqs[i] for i in kept)

    def _score_prompts(self, admitted: list[_Sequence], logits: torch.Tensor) -> None:
        """Prompt logprobs of the sequences that asked, from the prefill's logits (`[batch,
        keep, vocab]`, the last `keep` positions of the left-padded rows)."""
        keep = logits.shape[1]
        for b, seq in enumerate(admitted):
            k = seq.params.prompt_logprobs
            if k is None:
                continue
            n = len(seq.prompt_ids)
            scored: list[TokenLogprob | None] = [None]
            if n > 1:
                # Position t predicts token t + 1; the prompt fills the last n kept positions.
                rows = logits[b, keep - n : keep - 1, :]
                targets = torch.tensor(seq.prompt_ids[1:], device=logits.device)
                scored += ranked_logprobs(rows, targets, [k] * (n - 1))
            seq.prompt_logprobs = scored

    def _decode(self) -> None:
        batch = self._batch
        assert batch is not None
        start = time.monotonic()
        running = self._running
        try:
            inputs = batch.step_inputs()
            out = self._model(**inputs, cache=batch.cache, use_cache=True, logits_to_keep=1)
            logits = out.logits[:, -1, :]
        except Exception as exc:
            logger.exception("decode step for %d sequences failed", len(running), extra=_naming(running))
            self._batch = None
            self._running = []
            self._fail_all(running, exc)
            return
        tokens, logprobs = self._sample(running, logits)
        keep = self._advance(running, tokens, logprobs)
        batch.advance(
            inputs["attention_mask"],
            _token_tensor(tokens, self._device),
        )
        self._counters["steps"] += 1
        self._counters["last_batch_size"] = len(running)
        self._report_step(StepReport("decode", len(running), len(running), time.monotonic() - start))
        self._retain(keep)

    def _sample(
        self, seqs: list[_Sequence], logits: torch.Tensor
    ) -> tuple[list[int | None], list[TokenLogprob | None]]:
        """Next token per sequence (None where sampling failed: that request is failed) and,
        for the sequences that asked, its logprobs from the same (unedited) logits."""
        masked = self._constrain(seqs, logits)
        rows = [s.row for s in seqs]
        try:
            tokens = sample(masked, rows, self._eos_ids)
            return list(tokens), chosen_logprobs(logits, rows, tokens)
        except Exception:
            logger.exception("batched sampling failed; retrying row by row", extra=_naming(seqs))
        picked: list[int | None] = []
        logprobs: list[TokenLogprob | None] = []
        for i, seq in enumerate(seqs):
            if seq.finish_reason is not None:
                picked.append(None)
                logprobs.append(None)
                continue
            try:
                token = sample(masked[i : i + 1], [seq.row], self._eos_ids)[0]
                logprobs.append(chosen_logprobs(logits[i : i + 1], [seq.row], [token])[0])
                picked.append(token)
            except Exception as exc:  # noqa: BLE001 - delivered to this request's iterator
                self._fail(seq, exc)
                picked.append(None)
                logprobs.append(None)
        return picked, logprobs

    def _constrain(self, seqs: list[_Sequence], logits: torch.Tensor) -> torch.Tensor:
        """The logits to sample from: `logits` itself when no row is constrained, else a copy
        with every constrained row's forbidden tokens masked, all rows at once. A row whose
        mask cannot be computed is failed (what it samples is dropped)."""
        from reference_server.inference.structured import apply_constraints

        constraints = [s.constraint for s in seqs]
        if all(c is None for c in constraints):
            return logits
        masked = logits.clone()
        try:
            apply_constraints(masked, constraints)
            return masked
        except Exception:
            logger.exception("batched grammar masking failed; retrying row by row")
        masked = logits.clone()
        for i, (seq, constraint) in enumerate(zip(seqs, constraints)):
            if constraint is None:
                continue
            try:
                apply_constraints(masked[i : i + 1], [constraint])
            except Exception as exc:  # noqa: BLE001 - delivered to this request's iterator
                self._fail(seq, exc)
        return masked

    def _advance(
        self, seqs: list[_Sequence], tokens: list[int | None], logprobs: list[TokenLogprob | None]
    ) -> list[int]:
        """Append each sampled token, emit its event; return the rows that continue."""
        now = time.monotonic()
        keep: list[int] = []
        for i, (seq, token) in enumerate(zip(seqs, tokens)):
            if token is None or seq.finish_reason is not None:
                continue
            if seq.cancelled:
                self._end_cancelled(seq)
                continue
            try:
                event = self._append(seq, token, now)
                event = self._with_logprobs(seq, event, logprobs[i])
            except Exception as exc:
                logger.exception("detokenization failed", extra=_naming([seq]))
                self._fail(seq, exc)
                continue
            seq.deliver(event)
            self._counters["generated_tokens"] += 1
            if event.finish_reason is None:
                keep.append(i)
            else:
                self._finish(seq, event.finish_reason)
        return keep

    @staticmethod
    def _with_logprobs(seq: _Sequence, event: TokenEvent, logprob: TokenLogprob | None) -> TokenEvent:
        """The event with its token's logprob and, on a request's first event, the prompt's."""
        prompt = seq.prompt_logprobs if len(seq.output_ids) == 1 else None
        if logprob is None and prompt is None:
            return event
        return TokenEvent(event.text, event.token_ids, event.finish_reason,
                          logprobs=[logprob] if logprob is not None else None, prompt_logprobs=prompt)

    def _append(self, seq: _Sequence, token: int, now: float) -> TokenEvent:
        seq.output_ids.append(token)
        seq.token_times.append(now)
        params = seq.params
        constraint = seq.constraint
        if constraint is not None:
            if not constraint.accept(token):
                raise GenerationError(f"token {token} was sampled but the grammar does not allow it")
            if constraint.terminated:  # the grammar is complete and took its stop token
                text, _ = seq.detokenizer.finish()
                return TokenEvent(text, [token], "stop")
        if (token in self._eos_set and not params.ignore_eos) or token in params.stop_token_ids:
            text, _ = seq.detokenizer.finish()
            return TokenEvent(text, [token], "stop")
        text, stopped = seq.detokenizer.step((token,))
        if stopped:
            return TokenEvent(text, [token], "stop")
        produced = len(seq.output_ids)
        if produced >= params.max_tokens or len(seq.prompt_ids) + produced >= self._context_length:
            rest, stopped = seq.detokenizer.finish()
            return TokenEvent(text + rest, [token], "stop" if stopped else "length")
        return TokenEvent(text, [token], None)

    # ----- request endings -----

    def _finish(self, seq: _Sequence, reason: str) -> None:
        seq.finish_reason = reason
        now = time.monotonic()
        key = {"cancelled": "cancelled", "error": "failed", "aborted": "failed"}.get(reason, "finished")
        self._counters[key] += 1
        if not self._observers:
            return
        times = seq.token_times
        report = RequestReport(
            finish_reason=reason,
            prompt_tokens=len(seq.prompt_ids),
            completion_tokens=len(seq.output_ids),
            queue_time_s=seq.queue_time,
            time_to_first_token_s=seq.time_to_first_token,
            inter_token_latencies_s=[b - a for a, b in itertools.pairwise(times)],
            duration_s=now - seq.submitted_time,
        )
        for observer in self._observers:
            try:
                observer.on_request_done(report)
            except Exception:
                logger.exception("engine observer failed")

    def _end_cancelled(self, seq: _Sequence) -> None:
        seq.deliver(_END)
        self._finish(seq, "cancelled")

    def _fail(self, seq: _Sequence, exc: BaseException) -> None:
        error = GenerationError(f"generation failed: {type(exc).__name__}: {exc}")
        error.__cause__ = exc
        seq.deliver(error)
        self._finish(seq, "error")

    def _fail_all(self, seqs: list[_Sequence], exc: BaseException) -> None:
        for seq in seqs:
            if seq.finish_reason is None:
                self._fail(seq, exc)

    def _abort_all(self) -> None:
        with self._cond:
            pending = list(self._waiting) + self._running
            self._waiting.clear()
        self._running = []
        self._batch = None
        for seq in pending:
            if seq.finish_reason is None:
                seq.deliver(EngineStoppedError("the generation engine stopped before this request finished"))
                self._finish(seq, "aborted")

    def _report_step(self, report: StepReport) -> None:
        for observer in self._observers:
            try:
                observer.on_step(report)
            except Exception:
                logger.exception("engine observer failed")


def _token_tensor(tokens: list[int | None], device: torch.device) -> torch.Tensor:
    """Sampled tokens as the next decode input; failed rows (None) feed a placeholder until they leave."""
    return torch.tensor([0 if t is None else t for t in tokens], dtype=torch.long, device=device)


def _eos_token_ids(model: Any, tokenizer: Any) -> list[int]:
    """Every token that ends a sequence: the generation config's EOS ids plus the tokenizer's."""
    ids: set[int] = set()
    eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if isinstance(eos, int):
        ids.add(eos)
    elif isinstance(eos, (list, tuple)):
        ids.update(int(t) for t in eos)
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    return sorted(ids)
