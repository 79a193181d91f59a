"""Dynamic batching for embedding models.

Embedding calls are short and often arrive together (many clients, or one client sending
many inputs). Encoding them one forward pass per input wastes most of the CPU, so calls are
queued and a worker thread packs every input waiting at that moment into batches, bounded by
count and by padded tokens, after sorting them by length so that similar lengths share a batch.
Each batch runs in one forward pass; the vectors are then routed back to their calls in the
original order. Where the model allows it (checked once at start, `packing.packs_like_padding`)
a batch is one row of its texts side by side, with no padding at all; otherwise it is padded
to its longest text. Several workers (`streams`, one per torch thread on a CPU) take batches
side by side: a batch of a few dozen short texts keeps one core busy but scales poorly across
more, so two one-thread forwards at once do about 1.4x the work of one two-thread forward.

Calls made as background work (batch lines, `priority.is_background`) give way: each batch
formed takes interactive inputs first and fills the rest with background ones, and batches
holding interactive inputs, or interactive calls still to encode, run before background-only
batches already packed, so an interactive call waits for at most the forwards already running.

Vectors are the mean of the last hidden states over real tokens, L2-normalised (the
sentence-transformers recipe for models such as all-MiniLM-L6-v2).

Fine-tuned classifiers of the encoder (`heads.py`: a LoRA adapter plus a head) are served
here too (`classify`): their rows join the same batches as embedding rows and other
classifiers' rows, each row gets its own adapter's update in the shared forward (`lora.py`)
and its first token goes through its own head. The resident classifiers are bounded and
evicted least recently used first (`ClassifierCache`); one that is not resident is read on a
thread of its own while the batches keep running.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from reference_server.errors import InvalidRequest
from reference_server.inference.engine.errors import EngineStoppedError, QueueFullError
from reference_server.inference.engine.heads import (
    ClassifierAdapter,
    ClassifierCache,
    ClassifierSource,
    encoder_projections,
    head_logits,
)
from reference_server.inference.engine.lora import Adapter, applying, batch_for_tokens, wrap_projections
from reference_server.inference.engine.packed_linear import pack_linears
from reference_server.inference.engine.packing import (
    mean_pool_packed,
    mean_pool_padded,
    packed_inputs,
    packs_like_padding,
    padded_inputs,
)
from reference_server.inference.engine.priority import is_background
from reference_server.inference.engine.worker import EngineThread
from reference_server.inference.loading.spec import PackedWeights

if TYPE_CHECKING:
    from reference_server.inference.loading import LoadedModel

__all__ = ["EmbeddingBatcher", "QueueFullError"]

logger = logging.getLogger(__name__)

EmbeddingInput = str | Sequence[int]
# A classifier's input: a text, or a (text, text_pair) pair read together (a cross-encoder's).
ClassifierInput = str | tuple[str, str]


@dataclass
class _Job:
    """One `embed()` or `similarity()` call: its inputs, where its vectors go, what to make of
    them (`reduce`, run on the worker thread) and how to wake its caller."""

    inputs: list[EmbeddingInput] | list[ClassifierInput]
    future: asyncio.Future[tuple[Any, int]]
    loop: asyncio.AbstractEventLoop
    reduce: Callable[[list[list[float]]], Any] | None = None
    # The classifier whose logits the call wants (its inputs are ClassifierInput); None: vectors.
    head: ClassifierAdapter | None = None
    vectors: list[list[float] | None] = field(default_factory=list)
    remaining: int = 0
    prompt_tokens: int = 0
    background: bool = field(default_factory=is_background)  # a batch line: runs after interactive calls

    @property
    def abandoned(self) -> bool:
        return self.future.done()

    def succeed(self) -> None:
        vectors = [v for v in self.vectors if v is not None]
        try:
            result = (self.reduce(vectors) if self.reduce else vectors, self.prompt_tokens)
        except Exception as exc:  # noqa: BLE001 - raised again in the caller
            self.fail(exc)
            return
        self._resolve(lambda: self.future.set_result(result))

    def fail(self, exc: BaseException) -> None:
        self._resolve(lambda: self.future.set_exception(exc))

    def _resolve(self, action: Any) -> None:
        def run() -> None:
            if not self.future.done():  # the caller may have given up meanwhile
                action()

        try:
            self.loop.call_soon_threadsafe(run)
        except RuntimeError:  # the caller's loop is closed
            pass


@dataclass
class _Item:
    job: _Job
    index: int
    ids: list[int]


class EmbeddingBatcher(EngineThread):
    """Queues `embed()` calls for one embedding model and runs them in packed batches."""

    def __init__(
        self,
        loaded: LoadedModel,
        *,
        max_batch_size: int = 32,
        max_batch_tokens: int = 8192,
        max_queued: int = 1024,
        streams: int | None = None,
        packed_weights: PackedWeights = "auto",
        max_loras: int = 64,
        max_lora_rank: int = 64,
    ) -> None:
        if max_batch_size < 1 or max_batch_tokens < 1 or max_queued < 0 or (streams is not None and streams < 1):
            raise ValueError("max_batch_size, max_batch_tokens and streams must be >= 1 and max_queued >= 0")
        super().__init__(f"embed-{loaded.spec.id}")
        self.max_batch_size = max_batch_size
        self.max_batch_tokens = max_batch_tokens
        self.max_queued = max_queued
        # Forwards running side by side, each on its own worker thread with its share of the torch
        # threads; None: one per torch thread on a CPU, one on a GPU.
        self.streams = streams
        self._id = loaded.spec.id
        self._model = loaded.model
        self._tokenizer = loaded.tokenizer
        self._device = torch.device(loaded.device)
        self._max_length = loaded.context_length
        self._vocab_size = int(loaded.model.config.vocab_size)
        pad = loaded.tokenizer.pad_token_id
        self._pad_id = int(pad) if pad is not None else 0
        self._prefix, self._suffix = _special_affixes(loaded.tokenizer)
        if self._device.type == "cpu":
            pack_linears(loaded.model, packed_weights, rows=max_batch_size)
        self.adapters = ClassifierCache(encoder_projections(wrap_projections(loaded.model)),
                                        hidden=int(loaded.model.config.hidden_size), max_loras=max_loras,
                                        max_rank=max_lora_rank, dtype=loaded.model.dtype, device=self._device)
        self.packed = packs_like_padding(loaded.model, loaded.tokenizer, self._pad_id, self._device)
        logger.info("embedding model %s: batches %s", self._id,
                    "packed without padding" if self.packed else "padded (the model cannot take packed rows)")
        self._queue: deque[_Job] = deque()  # submitted calls, not yet encoded
        self._batches: deque[list[_Item]] = deque()  # encoded and packed, waiting for a worker
        self._background: deque[list[_Item]] = deque()  # the same, of background inputs only
        self._done = threading.Lock()  # job completion and counters, shared by the workers
        self._counters = {"requests": 0, "inputs": 0, "batches": 0, "tokens": 0, "last_batch_size": 0}

    async def embed(self, inputs: Sequence[EmbeddingInput]) -> tuple[list[list[float]], int]:
        """Vectors for `inputs` (strings or token-id lists), in order, and the tokens they used.

        Raises InvalidRequest for an input longer than the model accepts (or with unknown token
        ids), QueueFullError when `max_queued` calls are already waiting, EngineStoppedError
        when the batcher is not running.
        """
        vectors: list[list[float]]
        vectors, tokens = await self._submit(list(inputs), None)
        return vectors, tokens

    async def similarity(self, queries: Sequence[EmbeddingInput],
                         documents: Sequence[EmbeddingInput]) -> tuple[list[float], int]:
        """The cosine similarity of each document with its query (a single query is compared with
        every document), and the tokens embedded; errors as for `embed`. Queries and documents
        are one call, so they share batches, and the similarities are computed on the worker."""
        if len(queries) not in (1, len(documents)):
            raise ValueError("similarity takes one query, or one query per document")
        if not documents:
            return [], 0
        count = len(queries)

        def cosines(vectors: list[list[float]]) -> list[float]:
            # The vectors are unit length: their dot product is the cosine.
            sides = torch.tensor(vectors)
            similarities: list[float] = (sides[:count] * sides[count:]).sum(dim=-1).tolist()
            return similarities

        similarities: list[float]
        similarities, tokens = await self._submit([*queries, *documents], cosines)
        return similarities, tokens

    async def classify(self, inputs: Sequence[ClassifierInput],
                       source: ClassifierSource) -> tuple[list[list[float]], int]:
        """The logits of the fine-tuned classifier `source` (its head's labels, in order) for each
        input, a text or a (text, text_pair) pair, cut to the model's context (a pair loses
        tokens from its longer text first), and the tokens they took. The classifier is read
        first if it is not resident; `AdapterUnusableError` if it cannot be, other errors as
        for `embed`."""
        if not self.accepting:
            raise EngineStoppedError("the embedding batcher is not running")
        head = self.adapters.get(source)
        if head is None:
            loop = asyncio.get_running_loop()
            loaded: asyncio.Future[Adapter] = loop.create_future()

            def done(adapter: Adapter | None, error: BaseException | None) -> None:
                def settle() -> None:
                    if loaded.done():
                        return
                    if adapter is not None:
                        loaded.set_result(adapter)
                    else:
                        loaded.set_exception(error or EngineStoppedError("the classifier could not be read"))

                loop.call_soon_threadsafe(settle)

            self.adapters.fetch(source, done)
            head = await loaded
        assert isinstance(head, ClassifierAdapter)
        logits: list[list[float]]
        logits, tokens = await self._submit(list(inputs), None, head)
        return [row[: len(source.labels)] for row in logits], tokens

    async def _submit(self, items: list[EmbeddingInput] | list[ClassifierInput],
                      reduce: Callable[[list[list[float]]], Any] | None,
                      head: ClassifierAdapter | None = None) -> tuple[Any, int]:
        if not self.accepting:
            raise EngineStoppedError("the embedding batcher is not running")
        if not items:
            return [], 0
        loop = asyncio.get_running_loop()
        job = _Job(inputs=items, future=loop.create_future(), loop=loop, reduce=reduce, head=head)
        with self._cond:
            if len(self._queue) >= max(1, self.max_queued):
                raise QueueFullError(f"{len(self._queue)} embedding requests are waiting")
            self._queue.append(job)
            self._cond.notify()
        return await job.future

    def stats(self) -> dict[str, int]:
        return {**self._counters, "waiting": len(self._queue), "adapters_resident": self.adapters.resident,
                "adapter_loads": self.adapters.loads, "adapter_evictions": self.adapters.evictions}

    # ----- worker thread -----

    def _workers(self, threads: int) -> int:
        # On a CPU, `streams` forwards of one thread each beat one forward on all threads:
        # batches of a few dozen short texts scale poorly across threads (see `streams`).
        if self.streams is not None:
            return self.streams
        return threads if self._device.type == "cpu" else 1

    def _run(self, threads: int) -> None:
        torch.set_num_threads(threads)
        tokenizer = copy.deepcopy(self._tokenizer)  # a fast tokenizer must not be shared across threads
        with torch.inference_mode():
            while True:
                with self._cond:
                    while not self._stopping and not self._queue and not self._batches and not self._background:
                        self._cond.wait()
                    if self._stopping:
                        break
                    batch, jobs = self._next_work()
                if jobs:
                    batches = self._prepare(jobs, tokenizer)
                    batch = batches.pop(0) if batches else None
                    with self._cond:
                        for packed in batches:
                            background = all(it.job.background for it in packed)
                            (self._background if background else self._batches).append(packed)
                        self._cond.notify(len(batches))
                if batch is not None:
                    self._run_batch(batch)
        with self._cond:
            pending = [*self._queue, *(it.job for batch in (*self._batches, *self._background) for it in batch)]
            self._queue.clear()
            self._batches.clear()
            self._background.clear()
        for job in {id(j): j for j in pending}.values():
            job.fail(EngineStoppedError("the embedding batcher stopped before this request ran"))

    def _next_work(self) -> tuple[list[_Item] | None, list[_Job]]:
        """What a free worker does next (called holding the lock): a packed batch with interactive
        inputs; else the submitted calls to encode, if any is interactive or no background batch
        waits; else a background batch."""
        if self._batches:
            return self._batches.popleft(), []
        if self._queue and (not self._background or not all(job.background for job in self._queue)):
            jobs = list(self._queue)
            self._queue.clear()
            return None, jobs
        return self._background.popleft(), []

    def _prepare(self, jobs: list[_Job], tokenizer: Any) -> list[list[_Item]]:
        """Encode the jobs' inputs (failing a job whose inputs cannot be embedded) and pack them
        into batches."""
        items: list[_Item] = []
        for job in jobs:
            if job.abandoned:
                continue
            try:
                encoded = (self._encode_for_head(job.inputs, tokenizer) if job.head is not None  # type: ignore[arg-type]
                           else self._encode(job.inputs, tokenizer))  # type: ignore[arg-type]
            except Exception as exc:  # noqa: BLE001 - raised again in the caller's embed()
                job.fail(exc)
                continue
            job.vectors = [None] * len(encoded)
            job.remaining = len(encoded)
            job.prompt_tokens = sum(len(ids) for ids in encoded)
            items.extend(_Item(job, i, ids) for i, ids in enumerate(encoded))
        with self._done:
            self._counters["requests"] += len(jobs)
        items.sort(key=lambda it: (it.job.background, len(it.ids)))
        return self._pack(items)

    def _run_batch(self, batch: list[_Item]) -> None:
        live = [it for it in batch if not it.job.abandoned]
        if not live:
            return
        try:
            heads = [it.job.head for it in live]
            ids = [it.ids for it in live]
            vectors = self._forward(ids, heads) if any(heads) else self._forward(ids)
        except Exception as exc:  # noqa: BLE001 - raised again in each caller's embed()
            for job in {id(it.job): it.job for it in live}.values():
                job.fail(exc)
            return
        with self._done:  # a job's batches may finish on different workers
            for it, vector in zip(live, vectors):
                it.job.vectors[it.index] = vector
                it.job.remaining -= 1
                if it.job.remaining == 0:
                    it.job.succeed()

    def _pack(self, items: list[_Item]) -> list[list[_Item]]:
        """Consecutive runs of items (interactive ones first, each kind sorted by length) within
        the count and padded-token caps, spread over at least as many batches as there are workers
        (when there are enough items), so that all of them get a share."""
        per_batch = min(self.max_batch_size, max(1, -(-len(items) // len(self._threads or [None]))))
        batches: list[list[_Item]] = []
        current: list[_Item] = []
        widest = 0
        for item in items:
            width = max(widest, len(item.ids))
            if current and (
                len(current) >= per_batch or (len(current) + 1) * width > self.max_batch_tokens
            ):
                batches.append(current)
                current = []
                width = len(item.ids)
            current.append(item)
            widest = width
        if current:
            batches.append(current)
        return batches

    def _encode_for_head(self, inputs: list[ClassifierInput], tokenizer: Any) -> list[list[int]]:
        """Token ids of classifier inputs, as `classify` describes them."""
        paired = [not isinstance(x, str) for x in inputs]
        if any(paired) and not all(paired):
            raise InvalidRequest("input mixes single texts and text pairs; send one kind per call.", param="input")
        firsts = [x if isinstance(x, str) else x[0] for x in inputs]
        seconds = [x[1] for x in inputs if not isinstance(x, str)]
        ids = tokenizer(firsts, seconds or None, add_special_tokens=True, truncation=True,
                        max_length=self._max_length)["input_ids"]
        return [list(row) for row in ids]

    def _encode(self, inputs: list[EmbeddingInput], tokenizer: Any = None) -> list[list[int]]:
        """Token ids (with the model's special tokens) per input; InvalidRequest naming the first
        input that cannot be embedded."""
        texts = [(i, x) for i, x in enumerate(inputs) if isinstance(x, str)]
        encoded: list[list[int] | None] = [None] * len(inputs)
        if texts:
            ids = (tokenizer or self._tokenizer)([x for _, x in texts], add_special_tokens=True, truncation=False)[
                "input_ids"
            ]
            for (i, _), row in zip(texts, ids):
                encoded[i] = list(row)
        for i, x in enumerate(inputs):
            if encoded[i] is not None:
                continue
            tokens = [int(t) for t in x]
            bad = [t for t in tokens if not 0 <= t < self._vocab_size]
            if bad:
                raise InvalidRequest(
                    f"input[{i}] has token id {bad[0]}, outside the vocabulary (0..{self._vocab_size - 1})",
                    param="input",
                )
            encoded[i] = self._prefix + tokens + self._suffix
        result = [row for row in encoded if row is not None]
        for i, row in enumerate(result):  # every input was encoded, so indices still match
            if len(row) > self._max_length:
                raise InvalidRequest(
                    f"input[{i}] is {len(row)} tokens long; model '{self._id}' accepts at most "
                    f"{self._max_length} tokens per input",
                    param="input",
                )
        return result

    def _forward(self, rows: list[list[int]],
                 heads: Sequence[ClassifierAdapter | None] | None = None) -> list[list[float]]:
        """One forward over `rows`: for a row without a head its embedding, for a row of a
        classifier (its adapter applied to its tokens) its head's logits."""
        heads = heads if heads is not None else [None] * len(rows)
        lengths = [len(r) for r in rows]
        if self.packed:
            _, adapters = batch_for_tokens(None, list(zip(heads, lengths)), self._device)
            with applying(adapters):
                hidden = self._model(**packed_inputs(rows, self._device)).last_hidden_state
            pooled = mean_pool_packed(hidden, lengths)
            starts = torch.cumsum(torch.tensor([0, *lengths[:-1]]), 0).to(self._device)
            first = hidden[0].index_select(0, starts)
        else:
            inputs = padded_inputs(rows, self._pad_id, self._device)
            width = inputs["input_ids"].shape[1]
            _, adapters = batch_for_tokens(None, [(head, width) for head in heads], self._device)
            with applying(adapters):
                hidden = self._model(**inputs).last_hidden_state
            pooled = mean_pool_padded(hidden, inputs["attention_mask"])
            first = hidden[:, 0]
        out: list[list[float]] = F.normalize(pooled.float(), p=2, dim=-1).cpu().tolist()
        classified = [i for i, head in enumerate(heads) if head is not None]
        if classified:
            index = torch.tensor(classified, device=self._device)
            logits = head_logits(self._model, first.index_select(0, index),
                                 [h for h in heads if h is not None]).cpu().tolist()
            for i, row in zip(classified, logits):
                out[i] = row
        with self._done:
            self._counters["batches"] += 1
            self._counters["inputs"] += len(rows)
            self._counters["tokens"] += sum(len(r) for r in rows)
            self._counters["last_batch_size"] = len(rows)
        return out


def _special_affixes(tokenizer: Any) -> tuple[list[int], list[int]]:
    """The special tokens the tokenizer puts before and after a single text (e.g. [CLS] … [SEP]),
    found by encoding a probe word with and without them; token-id inputs get the same frame."""
    probe = "hello"
    bare = list(tokenizer(probe, add_special_tokens=False)["input_ids"])
    full = list(tokenizer(probe, add_special_tokens=True)["input_ids"])
    for start in range(len(full) - len(bare) + 1):
        if full[start : start + len(bare)] == bare:
            return full[:start], full[start + len(bare) :]
    return [], []
