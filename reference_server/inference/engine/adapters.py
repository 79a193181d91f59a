"""The adapters a generation engine holds in memory: bounded, least recently used first out,
and loaded off the engine thread.

A fine-tuned model served on a base engine is an `AdapterSource` (its id and its PEFT folder).
A request for it finds the adapter resident (`get`), or asks for it (`fetch`): the folder is
read on the cache's loader thread while the engine keeps stepping, and the request joins the batch
once it is in. At most `max_loras` adapters stay resident; loading one more evicts the least
recently used. Eviction only drops the cache's reference: a running request holds its adapter
until it ends, so an adapter evicted while in use is freed when its last request leaves.

A folder that cannot be read (corrupt, for another base model, too large a rank) fails the
requests for that model only, with `AdapterUnusableError`, and is remembered as unusable until
the model is unserved (`forget`).

Loads run one at a time on one loader thread of the cache's own, which runs torch with one
thread (no OpenMP workers of its own to slow the engines' forwards). One thread, not one per
load: glibc gives each thread that allocates at once an arena of its own, and the freed
tensors of evicted adapters stayed behind in those arenas. Measured with 100 adapters through
16 slots (`python -m bench.tenants`), a request to each added 194 MiB of resident memory with
a thread per load and 55 MiB with one loader, for 29 MiB of resident adapters.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch

from reference_server.inference.engine.errors import AdapterUnusableError
from reference_server.inference.engine.lora import (
    Adapter,
    AdapterError,
    AdapterLinear,
    read_adapter,
    read_merged,
)

logger = logging.getLogger("reference_server")

# Called with the adapter, or with the error that kept it from loading.
Loaded = Callable[[Adapter | None, BaseException | None], None]


@dataclass(frozen=True, eq=False)
class AdapterSource:
    """Where a fine-tuned model's adapter lives; `name` (its model id) is its identity in caches.
    With `merged_on`, `path` is a LoRA fine-tune saved merged into a whole model folder, and the
    adapter is its difference from the base model folder `merged_on` (`lora.read_merged`)."""

    name: str
    path: Path
    merged_on: Path | None = None


class AdapterCache:
    def __init__(self, modules: dict[str, AdapterLinear], *, max_loras: int, max_rank: int,
                 dtype: torch.dtype, device: torch.device) -> None:
        if max_loras < 1 or max_rank < 1:
            raise ValueError("max_loras and max_rank must be >= 1")
        self.max_loras = max_loras
        self.max_rank = max_rank
        self._modules = modules
        self._dtype = dtype
        self._device = device
        self._lock = threading.Lock()
        self._resident: OrderedDict[str, Adapter] = OrderedDict()
        self._waiting: dict[str, list[Loaded]] = {}
        self._unusable: dict[str, str] = {}
        self.loads = 0
        self.evictions = 0
        self.load_seconds: list[float] = []  # each load's time, taken by whoever reports them
        self._timings_lock = threading.Lock()
        self._loader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="adapter-load",
                                          initializer=torch.set_num_threads, initargs=(1,))

    @property
    def resident(self) -> int:
        with self._lock:
            return len(self._resident)

    def holds(self, name: str) -> bool:
        with self._lock:
            return name in self._resident

    def take_load_times(self) -> list[float]:
        """The load times since the last call (for a histogram)."""
        with self._timings_lock:
            times, self.load_seconds = self.load_seconds, []
        return times

    def get(self, source: AdapterSource) -> Adapter | None:
        """The resident adapter (now the most recently used), or None; raises
        `AdapterUnusableError` for a source that failed to load."""
        with self._lock:
            self._check_usable(source)
            adapter = self._resident.get(source.name)
            if adapter is not None:
                self._resident.move_to_end(source.name)
            return adapter

    def fetch(self, source: AdapterSource, done: Loaded) -> None:
        """Load `source` on the loader thread and call `done` there (at once, on this thread,
        when it is resident already)."""
        with self._lock:
            adapter = self._resident.get(source.name)
            if adapter is None:
                waiters = self._waiting.get(source.name)
                if waiters is not None:  # a load is under way: wait for it
                    waiters.append(done)
                    return
                self._waiting[source.name] = [done]
        if adapter is not None:
            done(adapter, None)
            return
        self._loader.submit(self._load_for_waiters, source)

    def acquire(self, source: AdapterSource) -> Adapter:
        """The adapter, resident or read now on this thread; `AdapterUnusableError` if it cannot be."""
        adapter = self.get(source)
        if adapter is not None:
            return adapter
        try:
            return self.load(source)
        except AdapterError as exc:
            logger.error("the adapter of %s cannot be served: %s", source.name, exc)
            with self._lock:
                self._unusable[source.name] = str(exc)
            raise AdapterUnusableError(source.name) from exc

    def load(self, source: AdapterSource) -> Adapter:
        """Load `source` now, on this thread, and keep it resident; raises AdapterError."""
        adapter = self._read(source)
        self._keep(adapter)
        return adapter

    def forget(self, name: str) -> None:
        """Drop `name` (its model is no longer served); requests running on it keep it until they end."""
        with self._lock:
            self._resident.pop(name, None)
            self._unusable.pop(name, None)

    def _check_usable(self, source: AdapterSource) -> None:
        if source.name in self._unusable:
            raise AdapterUnusableError(source.name)

    def _read(self, source: AdapterSource) -> Adapter:
        start = time.perf_counter()
        if source.merged_on is not None:
            adapter = read_merged(source.path, source.merged_on, source.name, self._modules, max_rank=self.max_rank,
                                  dtype=self._dtype, device=self._device)
        else:
            adapter = read_adapter(source.path, source.name, self._modules, max_rank=self.max_rank,
                                   dtype=self._dtype, device=self._device)
        with self._timings_lock:
            self.load_seconds.append(time.perf_counter() - start)
        return adapter

    def _keep(self, adapter: Adapter) -> None:
        with self._lock:
            self.loads += 1
            self._resident[adapter.name] = adapter
            self._resident.move_to_end(adapter.name)
            while len(self._resident) > self.max_loras:
                self._resident.popitem(last=False)
                self.evictions += 1

    def _load_for_waiters(self, source: AdapterSource) -> None:
        adapter: Adapter | None = None
        error: BaseException | None = None
        try:
            adapter = self._read(source)
            self._keep(adapter)
        except AdapterError as exc:
            logger.error("the adapter of %s cannot be served: %s", source.name, exc)
            with self._lock:
                self._unusable[source.name] = str(exc)
            error = AdapterUnusableError(source.name)
        except Exception as exc:
            logger.exception("loading the adapter of %s failed", source.name)
            error = AdapterUnusableError(source.name)
            error.__cause__ = exc
        with self._lock:
            waiters = self._waiting.pop(source.name, [])
        for done in waiters:
            try:
                done(adapter, error)
            except Exception:
                logger.exception("an adapter waiter failed")
