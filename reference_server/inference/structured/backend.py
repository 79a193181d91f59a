"""The grammar compiler for one model's tokenizer: a cache keyed by grammar, and compilation
in worker threads under a time limit.

Compiling a JSON schema takes milliseconds, but some grammars take seconds (long repetition
counts in a `pattern`, thousands of enum values). Compiling on the engine thread would stall
every running row, so it happens here, in a small pool, before the request reaches the
engine; a compile that misses the time limit is answered with a 400. It is not abandoned:
xgrammar cannot be interrupted, so it runs to its end and its result is cached, and the same
request sent again is then served at once. Concurrent requests for one grammar share one
compile.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import OrderedDict, deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from reference_server.inference.structured.constraint import RowConstraint
from reference_server.inference.structured.errors import ConstraintError
from reference_server.inference.structured.specs import GrammarSpec


class StructuredBackend:
    """Compiles `GrammarSpec`s for one tokenizer (xgrammar) and makes per-request matchers."""

    def __init__(
        self,
        tokenizer: Any,
        vocab_size: int,
        stop_token_ids: list[int],
        *,
        compile_timeout_s: float = 10.0,
        max_grammar_bytes: int = 64 * 1024,
        cache_size: int = 512,
        workers: int = 2,
    ) -> None:
        self._tokenizer = tokenizer
        self._vocab_size = vocab_size
        self._stop_token_ids = stop_token_ids
        self.compile_timeout_s = compile_timeout_s
        self.max_grammar_bytes = max_grammar_bytes
        self._cache_size = cache_size
        self._cache: OrderedDict[GrammarSpec, Any] = OrderedDict()
        self._pending: dict[GrammarSpec, Future[Any]] = {}
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="grammar-compile")
        self._compiler: Any = None
        # Recent compile durations (seconds), cold compiles only, for the metrics and benchmarks.
        self.compile_times: deque[float] = deque(maxlen=1024)
        # Reading the vocabulary takes a while: do it now, not in the first request's time.
        self._pool.submit(self._get_compiler)

    async def compile(self, spec: GrammarSpec) -> Any:
        """The compiled grammar for `spec`, from the cache or compiled now (off this thread).

        Raises ConstraintError: grammar too large, invalid, or not compiled within the limit.
        """
        if spec.size > self.max_grammar_bytes:
            raise ConstraintError(
                f"{spec.param} is {spec.size} bytes; constrained decoding accepts at most "
                f"{self.max_grammar_bytes} bytes.",
                param=spec.param,
                code="grammar_too_large",
            )
        with self._lock:
            compiled = self._cache.get(spec)
            if compiled is not None:
                self._cache.move_to_end(spec)
                return compiled
            future = self._pending.get(spec)
            if future is None:
                future = self._pool.submit(self._compile_and_cache, spec)
                self._pending[spec] = future
        try:
            return await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(future)), self.compile_timeout_s)
        except asyncio.TimeoutError:
            raise ConstraintError(
                f"{spec.param}: the grammar did not compile within {self.compile_timeout_s:g} s; "
                "simplify it (fewer or shorter repetitions, smaller enums).",
                param=spec.param,
                code="grammar_too_complex",
            ) from None

    def compile_sync(self, spec: GrammarSpec) -> Any:
        """Compile (or fetch) on the calling thread, without the time limit: for tools and tests."""
        with self._lock:
            compiled = self._cache.get(spec)
        return compiled if compiled is not None else self._compile_and_cache(spec)

    def is_cached(self, spec: GrammarSpec) -> bool:
        with self._lock:
            return spec in self._cache

    def matcher(self, compiled: Any) -> RowConstraint:
        """A fresh per-request matcher over a compiled grammar."""
        import xgrammar as xgr

        return RowConstraint(xgr.GrammarMatcher(compiled))

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _compile_and_cache(self, spec: GrammarSpec) -> Any:
        try:
            start = time.perf_counter()
            compiled = self._compile(spec)
            self.compile_times.append(time.perf_counter() - start)
            with self._lock:
                self._cache[spec] = compiled
                while len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
            return compiled
        finally:
            with self._lock:
                self._pending.pop(spec, None)

    def _compile(self, spec: GrammarSpec) -> Any:
        import xgrammar as xgr

        compiler = self._get_compiler()
        try:
            if spec.kind == "json_schema":
                return compiler.compile_json_schema(spec.source, any_whitespace=False)
            if spec.kind == "regex":
                return compiler.compile_regex(spec.source)
            if spec.kind == "structural_tag":
                return compiler.compile_structural_tag(json.loads(spec.source))
            try:
                return compiler.compile_grammar(spec.source)
            except (RuntimeError, ValueError) as ebnf_error:
                try:
                    return compiler.compile_lark(spec.source)
                except (RuntimeError, ValueError):
                    raise ebnf_error from None
        except (RuntimeError, ValueError, xgr.exception.InvalidJSONError,
                xgr.exception.InvalidStructuralTagError) as exc:
            raise ConstraintError(f"{spec.param} could not be compiled: {_short(exc)}", param=spec.param,
                                  code="invalid_grammar") from None

    def _get_compiler(self) -> Any:
        import xgrammar as xgr

        with self._lock:
            if self._compiler is None:
                info = xgr.TokenizerInfo.from_huggingface(
                    self._tokenizer, vocab_size=self._vocab_size, stop_token_ids=self._stop_token_ids
                )
                self._compiler = xgr.GrammarCompiler(info, max_threads=1, cache_enabled=False)
            return self._compiler


def _short(exc: BaseException) -> str:
    """xgrammar's message without its source-location prefix (`[hh:mm:ss] /path/file.cc:123: `)."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if text.startswith("[") and ".cc:" in text:
        text = text.split(": ", 1)[-1]
    return text[:300]
