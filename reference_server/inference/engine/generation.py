"""Continuous (iteration-level) batching for one generative model.

Running `model.generate()` per request decodes one sequence per forward pass and leaves most
of the CPU idle: a small model decodes several times more tokens per second when eight
sequences share each forward. This engine keeps one running batch and, at every step:

1. drops sequences that were cancelled or finished, freeing their cache slots;
2. admits waiting requests into free slots, starting each from the longest prefix of its
   prompt found in the prefix cache (`prefix_cache`);
3. runs one forward pass, all of it packed into one row of tokens without padding: the next
   token of every decoding sequence, and the next part of the admitted prompts. While
   sequences decode, the prompt tokens riding along are at most `prefill_chunk_tokens`, and
   a prompt longer than that is prefilled in slices, one per step to its last token, each
   sized from the engine's own step times to add at most `SLICE_DECODE_RATIO` decode steps'
   time where it starts (`slicing.SliceSizer`: later slices attend to more): a long prompt
   delays the others' next token by one short slice, not by its whole prefill. Prompts go
   least prefill left first (credited with the time they have waited, so none starves), one
   to a step unless the next is short enough to ride along (`_prompt_chunks`): a prompt put
   in a step with a longer one would wait for that one's prefill too, and a burst of prompts
   then starts streaming one step after another rather than all after one long forward;
4. samples the next token of every sequence that decoded or finished its prompt.

Batch lines run as background rows (`priority`): admitted after interactive requests, kept out
of `background_reserve` slots while interactive requests arrive, preempted (their cache rows set
aside, uncopied) when an interactive request finds every slot taken, and sitting out the step
that prefills an interactive prompt, so the interactive request's first token costs what it
would cost with no batch running.

A request may name a fine-tuned LoRA adapter (`submit(adapter=...)`): its rows share every
forward pass with the base model's rows and other adapters' rows, and the wrapped projections
add each row's own low-rank update (`lora`, the one place adapters are applied). An adapter
not in memory is read on the adapter cache's loader thread (`adapters.AdapterCache`) while the batch runs;
its request joins the queue once it is in. Stored prefixes are reused only within one adapter.

Every sequence keeps its own row of the KV cache (`kvcache.SlotKVCache`), sized to its
length, from admission to the end: joining, leaving and decoding never copy the cache, and
the memory held follows the live sequences' lengths.

Before each sampling, rows that carry a grammar constraint (structured outputs, tool calls)
get their forbidden tokens masked in one batched step (`structured.apply_constraints`), on a
copy of the logits: free rows in the same batch are untouched, and logprobs stay the model's
raw ones for every row. Grammars are compiled before submission, off this thread, so a slow grammar
never holds up the batch.

The loop runs on its own thread so the asyncio event loop never blocks on torch; results
travel back per request through `loop.call_soon_threadsafe` into an `asyncio.Queue`. A
failure while sampling or detokenizing fails only the request concerned; a failed forward
fails the requests in it (their cache rows are then inconsistent) and the loop carries on
with the next requests.
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
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from reference_server import logs
from reference_server.errors import InvalidRequest
from reference_server.inference.engine import compiled_decode, llama_forward
from reference_server.inference.engine.adapters import AdapterCache, AdapterSource
from reference_server.inference.engine.detokenize import IncrementalDetokenizer
from reference_server.inference.engine.errors import EngineStoppedError, GenerationError, QueueFullError
from reference_server.inference.engine.kvcache import KVRow, SlotKVCache, check_supported, install
from reference_server.inference.engine.lora import (
    Adapter,
    AdapterSet,
    applying,
    batch_for_tokens,
    wrap_projections,
)
from reference_server.inference.engine.packed_linear import pack_linears
from reference_server.inference.engine.prefix_cache import PrefixCache
from reference_server.inference.engine.priority import is_background
from reference_server.inference.engine.sampling import (
    RowState,
    SamplingParams,
    TokenLogprob,
    chosen_logprobs,
    ranked_logprobs,
    sample,
)
from reference_server.inference.engine.slicing import SliceSizer
from reference_server.inference.engine.worker import EngineThread
from reference_server.inference.loading.spec import PackedWeights

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

# While sequences decode, the prompt tokens riding along in their step may add this many
# decode steps' time (measured as the engine runs): their inter-token latency stays within
# 1 + this of a plain decode step.
SLICE_DECODE_RATIO = 0.75
# The smallest slice, however slow prefill is (a prompt must progress).
MIN_SLICE_TOKENS = 16
# Background rows (batch lines) leave `background_reserve` slots free for interactive requests
# while one has arrived within this many seconds; with none for that long, they may fill all.
INTERACTIVE_GRACE_S = 1.0


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
    """One forward pass: the next token of `decoded` sequences and `prompt_tokens` more tokens
    of `prefilled` admitted prompts."""

    decoded: int
    prefilled: int
    prompt_tokens: int
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
        self.slot = -1  # row of the engine's KV cache, from admission on
        self.cached = 0  # tokens whose keys and values are in that row
        self.sliced = False  # its prompt is being prefilled in slices
        self.last_slice = 0  # tokens of its latest slice
        self.next_token = 0  # the token the next decode step feeds
        self.adapter: Adapter | None = None  # the fine-tuned model's adapter; None: the base model
        self.request_id = logs.request_id.get()  # submitted from the request's task
        self.background = is_background()  # a batch line: admitted after interactive requests
        self.parked: KVRow | None = None  # its cache row while preempted (a background row only)

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
    def stop_sequence(self) -> str | None:
        """The stop sequence that ended the text (read once the last event has come)."""
        return self._seq.detokenizer.matched_stop

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
        prefill_chunk_tokens: int = 512,
        prefix_cache_bytes: int = 256 * 2**20,
        packed_weights: PackedWeights = "auto",
        own_forward: bool = True,
        max_loras: int = 64,
        max_lora_rank: int = 64,
        background_reserve: int | None = None,
        compile_buckets: Sequence[int] = (),
        compile_cache_dir: Path | None = None,
    ) -> None:
        if max_running < 1 or max_batch_tokens < 1 or max_queued < 0:
            raise ValueError("max_running and max_batch_tokens must be >= 1 and max_queued >= 0")
        # Slots background rows leave to interactive requests while those keep arriving (at
        # least one slot is always open to background rows, so they never wait forever).
        reserve = max_running // 4 if background_reserve is None else background_reserve
        self.background_reserve = max(0, min(reserve, max_running - 1))
        self._last_interactive = float("-inf")
        self._sat_out = False  # background rows sat out the last step (`_step`)
        if prefill_chunk_tokens < 0 or prefix_cache_bytes < 0:
            raise ValueError("prefill_chunk_tokens and prefix_cache_bytes must be >= 0")
        super().__init__(f"generation-{loaded.spec.id}")
        self.max_running = max_running
        self.max_batch_tokens = max_batch_tokens
        self.max_queued = max_queued
        # 0: no slicing, a prompt is prefilled in one forward (up to max_batch_tokens).
        self.prefill_chunk_tokens = prefill_chunk_tokens or max_batch_tokens
        self._adaptive_slices = prefill_chunk_tokens > 0
        self._slices = SliceSizer(SLICE_DECODE_RATIO, min(MIN_SLICE_TOKENS, self.prefill_chunk_tokens),
                                  self.prefill_chunk_tokens)
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
        check_supported(self._config)
        install(self._model)
        # The engine's own forward where the model's family has one (llama_forward), else transformers'.
        self._forward = llama_forward.build(self._model) if own_forward else None
        # Its steps compiled per bucket of tokens (over the plain weights: before packing).
        self._compiled = compiled_decode.build(self._forward, self._device, compile_buckets, max_running,
                                               compile_cache_dir)
        if self._device.type == "cpu":
            if self._forward is not None:
                self._forward.pack(self._model, packed_weights, rows=max_running)
            else:
                pack_linears(self._model, packed_weights, rows=max_running)
        # Adapter rows get their low-rank update inside the projections (`lora`), after packing.
        self.adapters = AdapterCache(wrap_projections(self._model), max_loras=max_loras, max_rank=max_lora_rank,
                                     dtype=getattr(torch, loaded.dtype, torch.float32), device=self._device)
        if self._forward is not None:  # its o/down calls and fused projections apply them too
            self._forward.adapt(self._model)
        self._adapter_set: AdapterSet | None = None  # the latest step's adapters, reused while the same
        text_config = self._config.get_text_config()
        # Compiled steps hand attention float32 keys and values: the rows keep the model's dtype.
        self._cache = SlotKVCache(int(text_config.num_hidden_layers), max_running, self._context_length,
                                  self._device, self._model.dtype if self._compiled is not None else None)
        self.prefix_cache = PrefixCache(prefix_cache_bytes)

        self._waiting: deque[_Sequence] = deque()
        self._running: list[_Sequence] = []  # decoding; running[i] holds cache slot i
        self._prefilling: list[_Sequence] = []  # admitted, prompt not fully cached yet
        self._slot_owner: dict[int, _Sequence] = {}
        # Requests accepted and not yet finished. Admission and `stats` count this, not the
        # lists above: the engine thread moves a sequence from one list to the next without
        # the lock, and a request arriving in that moment must still see it.
        self._live = 0
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
            "prefix_hits": 0,
            "prefix_hit_tokens": 0,
            "preemptions": 0,
            "compiled_steps": 0,
        }

    # ----- event loop side -----

    def add_observer(self, observer: EngineObserver) -> None:
        self._observers.append(observer)

    @property
    def eos_token_ids(self) -> list[int]:
        """The tokens that end a sequence (a grammar's stop tokens must be these)."""
        return list(self._eos_ids)

    def submit(
        self, prompt_ids: Sequence[int], params: SamplingParams, constraint: RowConstraint | None = None,
        adapter: AdapterSource | None = None,
    ) -> GenerationHandle:
        """Queue a request; call from the event loop that will iterate the handle.

        `constraint` (a fresh matcher of a compiled grammar) restricts every sampled token to
        what the grammar allows; the request ends when the grammar is complete. `adapter` (a
        fine-tuned model served on this engine) gives the request's rows that adapter's update;
        an adapter not resident yet is loaded off the engine thread, and the request queues
        once it is in (or fails with `AdapterUnusableError`, also raised here for an adapter
        known to be unusable).

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
        if adapter is not None:
            seq.adapter = self.adapters.get(adapter)
        with self._cond:
            if self._live >= self.max_running + self.max_queued:
                raise QueueFullError(
                    f"{len(self._waiting)} requests are waiting and {len(self._running)} running"
                )
            self._live += 1
            if not seq.background:
                self._last_interactive = time.monotonic()
            if adapter is None or seq.adapter is not None:
                self._waiting.append(seq)
                self._cond.notify()
        if adapter is not None and seq.adapter is None:
            self.adapters.fetch(adapter, lambda loaded, error: self._adapter_loaded(seq, loaded, error))
        return GenerationHandle(seq, self._wake)

    def _adapter_loaded(self, seq: _Sequence, adapter: Adapter | None, error: BaseException | None) -> None:
        """Queue `seq` now that its adapter is resident, or fail it (on the loading thread)."""
        if error is None and adapter is not None and not seq.cancelled:
            seq.adapter = adapter
            with self._cond:
                if not self._stopping:
                    self._waiting.append(seq)
                    self._cond.notify()
                    return
            error = EngineStoppedError("the generation engine stopped while an adapter loaded")
        if seq.cancelled:
            self._end_cancelled(seq)
        else:
            seq.deliver(error)
            self._finish(seq, "error")

    def stats(self) -> dict[str, int]:
        """Current load, KV cache use and cumulative counters (a snapshot; safe to call from any
        thread). `kv_live_tokens` is the sum of the live sequences' cached lengths,
        `kv_allocated_tokens` what the cache holds memory for, `prefix_cache_bytes` what the
        stored prefixes take."""
        live = [*self._running, *self._prefilling]
        with self._cond:
            accepted, waiting = self._live, len(self._waiting)
        return {
            **self._counters,
            "running": accepted - waiting,
            "waiting": waiting,
            "max_running": self.max_running,
            "kv_live_tokens": sum(s.cached for s in live),
            "kv_allocated_tokens": self._cache.allocated_tokens,
            "kv_bytes_per_token": self._cache.bytes_per_token(),
            "prefix_cache_bytes": self.prefix_cache.bytes,
            "prefix_cache_entries": len(self.prefix_cache),
            "adapters_resident": self.adapters.resident,
            "adapter_loads": self.adapters.loads,
            "adapter_evictions": self.adapters.evictions,
            "compiled_buckets": len(self._compiled.ready_buckets) if self._compiled is not None else 0,
            "compile_ms": round(self._compiled.compile_seconds * 1e3) if self._compiled is not None else 0,
            "compile_pending": self._compiled.pending if self._compiled is not None else 0,
        }

    def start(self) -> None:
        """Start the engine thread, and the compile of its decode steps beside it (`compiled_decode`)."""
        super().start()
        if self._compiled is not None and not self._compiled.started:
            self._compiled.start(torch.get_num_threads())

    async def stop(self) -> None:
        if self._compiled is not None:
            self._compiled.stop()
        await super().stop()

    @property
    def compiled(self) -> compiled_decode.CompiledDecode | None:
        """The compiled decode steps, where this engine has them."""
        return self._compiled

    def _wake(self) -> None:
        with self._cond:
            self._cond.notify()

    # ----- engine thread -----

    def _run(self, threads: int) -> None:
        torch.set_num_threads(threads)
        with torch.inference_mode():
            while True:
                try:
                    self._drop_cancelled()
                    if not self._admit():
                        break
                    self._step()
                except Exception as exc:  # a bug outside the per-request guards: fail what is in flight
                    in_flight = self._prefilling + self._running
                    logger.exception("generation engine step failed", extra=_naming(in_flight))
                    self._running, self._prefilling, self._slot_owner = [], [], {}
                    self._cache.release()  # its state may be half-updated
                    self._fail_all(in_flight, exc)
        self._abort_all()

    def _admit(self) -> bool:
        """Wait for work; move the waiting requests that have a free slot into prefill. False: stop."""
        dropped: list[_Sequence] = []
        with self._cond:
            while not self._stopping and not self._waiting and not self._running and not self._prefilling:
                self._cond.wait()
            if self._stopping:
                return False
            if any(s.cancelled for s in self._waiting):
                dropped = [s for s in self._waiting if s.cancelled]
                self._waiting = deque(s for s in self._waiting if not s.cancelled)
            free = self.max_running - len(self._running) - len(self._prefilling)
            free += self._preempt(sum(not s.background for s in self._waiting) - free)
            admitted = self._take(free)
        for seq in dropped:
            self._end_cancelled(seq)
        now = time.monotonic()
        for seq in admitted:
            if seq.scheduled_time is None:
                seq.scheduled_time = now
            seq.slot = next(i for i in range(self.max_running) if i not in self._slot_owner)
            self._slot_owner[seq.slot] = seq
            if seq.parked is not None:
                self._resume(seq, seq.parked)
            else:
                self._prefilling.append(seq)
                self._reuse_prefix(seq)
        return True

    def _preempt(self, wanted: int) -> int:
        """Make room for `wanted` interactive requests that found no free slot by preempting
        background rows (under the lock), the latest submitted first; return the slots freed.

        A preempted row keeps its cache row, uncopied (`SlotKVCache.detach`), and goes back to
        the front of the background queue: it resumes where it stopped, its keys and values put
        back in whichever slot it gets, without prefilling anything again. Without this, a
        request arriving while batch lines fill every slot waited for one of them to finish
        (seconds, at 64 output tokens a line)."""
        if wanted <= 0:
            return 0
        rows = [s for s in (*self._running, *self._prefilling) if s.background]
        victims = sorted(rows, key=lambda s: s.submitted_time, reverse=True)[:wanted]
        if not victims:
            return 0
        out = {id(s) for s in victims}
        self._running = [s for s in self._running if id(s) not in out]
        self._prefilling = [s for s in self._prefilling if id(s) not in out]
        for seq in reversed(victims):  # the earliest submitted ends up first in the queue
            del self._slot_owner[seq.slot]
            seq.parked = self._cache.detach(seq.slot)
            self._waiting.appendleft(seq)
        self._counters["preemptions"] += len(victims)
        return len(victims)

    def _resume(self, seq: _Sequence, row: KVRow) -> None:
        """Put a preempted row back into the batch where it stopped: decoding, or prefilling
        the rest of its prompt."""
        seq.parked = None
        self._cache.attach(seq.slot, row)
        if seq.cached >= len(seq.prompt_ids):
            self._running.append(seq)
        else:
            self._prefilling.append(seq)

    def _take(self, free: int) -> list[_Sequence]:
        """Up to `free` waiting requests to admit (under the lock): interactive ones first, in
        arrival order, then background ones into the slots left, keeping `background_reserve`
        of all slots free of background rows while interactive requests keep arriving, so a new
        one finds a slot without waiting for a batch row to finish."""
        if free <= 0 or not self._waiting:
            return []
        taken = [s for s in self._waiting if not s.background][:free]
        room = free - len(taken)
        if room > 0:
            cap = self.max_running
            if time.monotonic() - self._last_interactive < INTERACTIVE_GRACE_S:
                cap -= self.background_reserve
            in_batch = sum(s.background for s in self._running) + sum(s.background for s in self._prefilling)
            room = min(room, cap - in_batch)
            if room > 0:
                taken += [s for s in self._waiting if s.background][:room]
        if len(taken) == len(self._waiting):
            self._waiting.clear()
        elif taken:
            chosen = {id(s) for s in taken}
            self._waiting = deque(s for s in self._waiting if id(s) not in chosen)
        return taken

    def _reuse_prefix(self, seq: _Sequence) -> None:
        if seq.params.prompt_logprobs is not None:
            return  # scoring needs the logits of every prompt position
        hit, kv = self.prefix_cache.lookup(seq.prompt_ids, _prefix_space(seq))
        if kv is None:
            return
        try:
            self._cache.write(seq.slot, kv, hit)
        except Exception:  # the prompt is then prefilled in full
            logger.exception("copying a cached prefix failed")
            return
        seq.cached = hit
        self._counters["prefix_hits"] += 1
        self._counters["prefix_hit_tokens"] += hit

    def _drop_cancelled(self) -> None:
        if any(s.cancelled for s in self._prefilling):
            for s in self._prefilling:
                if s.cancelled:
                    self._end_cancelled(s)
                    self._free(s)
            self._prefilling = [s for s in self._prefilling if not s.cancelled]
        if any(s.cancelled for s in self._running):
            keep = [i for i, s in enumerate(self._running) if not s.cancelled]
            for s in self._running:
                if s.cancelled:
                    self._end_cancelled(s)
            self._retain(keep)

    # ----- cache slots -----

    def _free(self, seq: _Sequence) -> None:
        if self._slot_owner.get(seq.slot) is seq:
            del self._slot_owner[seq.slot]
            self._cache.free(seq.slot)

    def _retain(self, keep: list[int]) -> None:
        """Keep only the running rows `keep` (indices into `_running`), freeing the others."""
        if len(keep) == len(self._running):
            return
        kept = set(keep)
        for i, seq in enumerate(self._running):
            if i not in kept:
                self._free(seq)
        self._running = [self._running[i] for i in keep]

    # ----- forward passes -----

    def _step(self) -> None:
        """One forward pass: the next token of every decoding sequence and the next part of the
        admitted prompts, packed into one row (see the module docstring, steps 3 and 4)."""
        chunks = self._prompt_chunks()
        running, idle = self._running, []
        if self._starts_interactive(chunks) and not self._sat_out:
            # An interactive prompt gets its first token at the end of this step: background
            # rows sit it out (every other step at most, so they always progress), and the
            # step costs the interactive rows only.
            running = [s for s in self._running if not s.background]
            idle = [s for s in self._running if s.background]
        self._sat_out = bool(idle)
        segments = [(s, [s.next_token]) for s in running] + [
            (s, s.prompt_ids[s.cached : s.cached + n]) for s, n in chunks]
        if not segments:
            return
        # Logits are kept at each segment's last token, and at every position of a scored prompt.
        keep: list[int] = []
        last: dict[int, int] = {}  # id of each sequence -> its last kept logits row
        offset = 0
        for i, (seq, ids) in enumerate(segments):
            scored = i >= len(running) and seq.params.prompt_logprobs is not None
            keep.extend(range(offset, offset + len(ids)) if scored else [offset + len(ids) - 1])
            last[id(seq)] = len(keep) - 1
            offset += len(ids)
        in_step = [seq for seq, _ in segments]
        start = time.monotonic()
        try:
            inputs = self._cache.plan([s.slot for s in in_step], [s.cached for s in in_step], [ids for _, ids in segments])
            self._adapter_set, adapters = batch_for_tokens(
                self._adapter_set, [(seq.adapter, len(ids)) for seq, ids in segments], self._device)
            kept = torch.tensor(keep, device=self._device)
            # A step of prompt tokens alone stays eager: a prompt's first token then comes from the
            # same forward whether a stored prefix left only its tail to prefill or not (in
            # bfloat16 another kernel's rounding decides near-ties: `shared-prefix` gave 4 of 12
            # answers identical with and without reuse when such steps ran compiled, 12 of 12 eager).
            bucket = (self._compiled.bucket(offset, len(keep))
                      if self._compiled is not None and adapters is None and running else None)
            with applying(adapters):
                if bucket is not None:
                    assert self._compiled is not None
                    logits = self._compiled(bucket, inputs["input_ids"][0], inputs["position_ids"][0], self._cache,
                                            kept)
                    self._counters["compiled_steps"] += 1
                elif self._forward is not None:
                    logits = self._forward(inputs["input_ids"][0], inputs["position_ids"][0], self._cache, kept)
                else:
                    logits = self._model(**inputs, cache=self._cache, use_cache=True, logits_to_keep=kept).logits[0]
        except Exception as exc:
            logger.exception("forward of %d sequences failed", len(in_step), extra=_naming(in_step))
            for seq in in_step:
                self._free(seq)
            self._running = idle  # the rows that sat out are untouched
            self._prefilling = [s for s in self._prefilling if s not in in_step]
            self._fail_all(in_step, exc)
            return
        elapsed = time.monotonic() - start
        prompt_tokens = sum(n for _, n in chunks)
        self._measure(chunks, bool(running), elapsed)
        if running:
            self._counters["steps"] += 1
            self._counters["last_batch_size"] = len(running)
        if chunks:
            self._counters["prefills"] += 1
            self._counters["prompt_tokens"] += prompt_tokens
        self._report_step(StepReport(len(running), len(chunks), prompt_tokens, elapsed))

        for seq in running:
            seq.cached += 1
        starting: list[_Sequence] = []
        for i, (seq, n) in enumerate(chunks, start=len(running)):
            seq.cached += n
            if seq.cached < len(seq.prompt_ids):
                continue
            self._prefilling.remove(seq)
            self._store_prefix(seq)
            if seq.params.prompt_logprobs is not None:  # prefilled whole: a row per prompt position
                self._score_prompt(seq, logits[last[id(seq)] - n + 1 : last[id(seq)] + 1])
            if seq.params.max_tokens == 0:  # scored only: the prompt's logprobs are the answer
                seq.deliver(TokenEvent("", [], "length", prompt_logprobs=seq.prompt_logprobs))
                self._finish(seq, "length")
                self._free(seq)
            else:
                starting.append(seq)
        sampled = running + starting
        if not sampled:
            return
        rows = torch.tensor([last[id(s)] for s in sampled], device=logits.device)
        tokens, logprobs = self._sample(sampled, logits[rows])
        keep_rows = set(self._advance(sampled, tokens, logprobs))
        self._running = idle
        for i, seq in enumerate(sampled):
            token = tokens[i]
            if i in keep_rows and token is not None:
                seq.next_token = token
                self._running.append(seq)
            else:
                self._free(seq)

    def _prompt_chunks(self) -> list[tuple[_Sequence, int]]:
        """The prompt tokens this step prefills, per admitted sequence, in `_prefill_order`: at
        most `prefill_chunk_tokens` in all (`max_batch_tokens` when prompts are prefilled
        whole), and while others decode, a longer prompt only a slice per step (the slice
        budget) to its last token.

        A second whole prompt joins the step only while the whole prompts' tokens stay within
        what the first brings, or within what rides along a decode step at the slice ratio:
        every prompt in a step gets its first token when the whole step ends, so a short prompt
        put with a long one would wait for the long one's prefill as well, where in a step of
        its own it waits one step more. Measured on `bench.serving` `mixed` at c=8 (two runs
        each): TTFT p50 0.54-0.55 s against 0.79-0.81 s with every prompt that fits in one step.
        A slice is short by construction and does not count: whole prompts still start beside
        a long prompt that goes first in every step while it is sliced."""
        decoding = bool(self._running)
        # Budget and order hold with nothing decoding too: a forward's fixed cost is one read of
        # the weights, small beside hundreds of prompt tokens, so a burst's prompts a step each
        # cost little.
        budget = min(self.prefill_chunk_tokens, self.max_batch_tokens)
        ride = self._slices.ride_tokens()  # one fit per step, not one per prompt
        # Slices keep a step within the largest compiled bucket where that leaves room for one:
        # beyond it the step runs eager, a premium larger than the slice budget itself.
        compiled = self._compiled.largest_bucket() if self._compiled is not None and decoding else 0
        room = compiled - len(self._running)
        chunks: list[tuple[_Sequence, int]] = []
        used = whole = 0  # prompt tokens in the step; of them, those of prompts taken whole
        for seq in self._prefill_order():
            if seq.background and self._starts_interactive(chunks):
                break  # background prompts come after interactive ones: none rides along this step
            remaining = len(seq.prompt_ids) - seq.cached
            scored = seq.params.prompt_logprobs is not None  # prefilled whole, in one forward
            seq.sliced = self._adaptive_slices and not scored and (
                seq.sliced or (decoding and remaining > self.prefill_chunk_tokens))
            take = remaining if scored else min(remaining, budget - used)
            if seq.sliced:
                take = min(take, self._slices.slice_tokens(seq.cached, seq.last_slice))
                if room - used >= MIN_SLICE_TOKENS:
                    take = min(take, room - used)
            if take <= 0 or (chunks and used + take > budget):
                break
            if not seq.sliced and whole and whole + take > max(whole, ride):
                continue  # it would wait for this step's whole prompt: the next step is its own
            if seq.sliced:
                seq.last_slice = take
            else:
                whole += take
            if not self._cache.holds(seq.slot, len(seq.prompt_ids) + 1):
                self._cache.reserve(seq.slot, len(seq.prompt_ids) + 1)  # its row is allocated once
            chunks.append((seq, take))
            used += take
        return chunks

    @staticmethod
    def _starts_interactive(chunks: list[tuple[_Sequence, int]]) -> bool:
        """Whether the step prefills an interactive prompt whole (or its last slice)."""
        return any(not seq.background and seq.cached + n >= len(seq.prompt_ids) for seq, n in chunks)

    def _prefill_order(self) -> list[_Sequence]:
        """The admitted prompts, interactive before background, each kind least prefill left
        first, credited with the time they have waited (`SliceSizer.priority`)."""
        now = time.monotonic()
        return sorted(self._prefilling, key=lambda seq: (seq.background, self._slices.priority(
            seq.cached, len(seq.prompt_ids) - seq.cached, now - seq.submitted_time)))

    def _measure(self, chunks: list[tuple[_Sequence, int]], decoding: bool, elapsed: float) -> None:
        """Teach the slice sizer what this step took (before the prompts' cached counts move)."""
        if not chunks:
            self._slices.decoded(elapsed)
        elif decoding:
            self._slices.prefilled([(seq.cached, n) for seq, n in chunks], elapsed)

    def _store_prefix(self, seq: _Sequence) -> None:
        space = _prefix_space(seq)
        if not self.prefix_cache.wants(seq.prompt_ids, space):
            return
        try:
            self.prefix_cache.insert(seq.prompt_ids, self._cache.read(seq.slot, len(seq.prompt_ids)), space)
        except Exception:  # reuse is an optimisation; the request goes on
            logger.exception("storing a prompt prefix failed")

    def _score_prompt(self, seq: _Sequence, logits: torch.Tensor) -> None:
        """The prompt logprobs `seq` asked for, from its logits at every prompt position
        (`[prompt tokens, vocab]`: position t predicts token t + 1)."""
        k = seq.params.prompt_logprobs
        assert k is not None
        n = len(seq.prompt_ids)
        scored: list[TokenLogprob | None] = [None]
        if n > 1:
            targets = torch.tensor(seq.prompt_ids[1:], device=logits.device)
            scored += ranked_logprobs(logits[: n - 1], targets, [k] * (n - 1))
        seq.prompt_logprobs = scored

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
        if seq.finish_reason is not None:
            return
        seq.finish_reason = reason
        seq.adapter = None  # an evicted adapter is freed once no request runs on it
        with self._cond:
            self._live -= 1
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
            pending = list(self._waiting) + self._prefilling + self._running
            self._waiting.clear()
        self._running, self._prefilling, self._slot_owner = [], [], {}
        self._cache.release()
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


def _prefix_space(seq: _Sequence) -> str:
    """Stored prefixes are reused only among rows of one adapter (or of the base model, "")."""
    return "" if seq.adapter is None else seq.adapter.name


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
