"""Grammar libraries for constrained decoding, compared on our tokenizer (CPU, one thread).

For each library and each schema of `data/schemas.json`: cold compile time (a fresh
compiler, nothing cached), cached compile time (the same schema again), and the cost of one
decode step's mask for a batch of 8 rows: filling the token bitmask of every row at once,
applying it to `[8, vocab]` logits, and advancing each matcher by the token picked from the
masked logits (random logits, so the rows walk through varied, valid documents).

    python bench/structured.py [--steps 40]

Used to choose the backend of `reference_server.inference.structured`; the figures are in
docs/structured-outputs.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from bench._common import GENERATOR

SCHEMAS: dict[str, dict[str, Any]] = json.loads((Path(__file__).parent / "data" / "schemas.json").read_text())
BATCH = 8


def _tokenizer() -> Any:
    from reference_server.inference.loading import default_specs, load_model
    from reference_server.settings import Settings

    spec = next(s for s in default_specs() if s.id == GENERATOR)
    return load_model(spec, cache_dir=Settings().cache_dir).tokenizer


def _ms(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    out = fn()
    return (time.perf_counter() - start) * 1000, out


class _XGrammar:
    name = "xgrammar"

    def __init__(self, tokenizer: Any, vocab: int) -> None:
        import xgrammar as xgr

        self.xgr = xgr
        self.info = xgr.TokenizerInfo.from_huggingface(tokenizer, vocab_size=vocab)
        self.batch = xgr.BatchGrammarMatcher(max_threads=1)

    def compiler(self) -> Any:
        return self.xgr.GrammarCompiler(self.info, max_threads=1, cache_enabled=True)

    def compile(self, compiler: Any, schema: dict[str, Any]) -> Any:
        return compiler.compile_json_schema(json.dumps(schema), any_whitespace=False)

    def matcher(self, compiled: Any) -> Any:
        return self.xgr.GrammarMatcher(compiled)

    def bitmask(self, rows: int, vocab: int) -> torch.Tensor:
        return self.xgr.allocate_token_bitmask(rows, vocab)

    def fill(self, matchers: list[Any], bitmask: torch.Tensor) -> None:
        self.batch.batch_fill_next_token_bitmask(matchers, bitmask)

    def apply(self, logits: torch.Tensor, bitmask: torch.Tensor) -> None:
        self.xgr.apply_token_bitmask_inplace(logits, bitmask)

    def accept(self, matcher: Any, token: int) -> bool:
        return bool(matcher.accept_token(token))

    def done(self, matcher: Any) -> bool:
        return bool(matcher.is_terminated())


class _LLGuidance:
    name = "llguidance"

    def __init__(self, tokenizer: Any, vocab: int) -> None:
        import llguidance
        import llguidance.hf
        import llguidance.torch

        self.llg = llguidance
        self.lt = llguidance.torch
        self.tok = llguidance.hf.from_tokenizer(tokenizer, n_vocab=vocab)
        self.executor = llguidance.LLExecutor(num_threads=1)

    def compiler(self) -> Any:
        return None

    def compile(self, compiler: Any, schema: dict[str, Any]) -> Any:
        grammar = self.llg.LLMatcher.grammar_from_json_schema(json.dumps(schema), defaults={"whitespace_flexible": False})
        return self.llg.LLMatcher(self.tok, grammar)

    def matcher(self, compiled: Any) -> Any:
        return compiled.deep_copy()

    def bitmask(self, rows: int, vocab: int) -> torch.Tensor:
        return self.lt.allocate_token_bitmask(rows, vocab)

    def fill(self, matchers: list[Any], bitmask: torch.Tensor) -> None:
        self.lt.fill_next_token_bitmask_par(self.executor, [(m, i) for i, m in enumerate(matchers)], bitmask)

    def apply(self, logits: torch.Tensor, bitmask: torch.Tensor) -> None:
        self.lt.apply_token_bitmask_inplace(logits, bitmask)

    def accept(self, matcher: Any, token: int) -> bool:
        return bool(matcher.consume_token(token))

    def done(self, matcher: Any) -> bool:
        return bool(matcher.is_stopped())


def measure(lib: Any, vocab: int, steps: int) -> dict[str, dict[str, float]]:
    results: dict[str, dict[str, float]] = {}
    generator = torch.Generator().manual_seed(0)
    for name, schema in SCHEMAS.items():
        cold, compiled = _ms(lambda s=schema: lib.compile(lib.compiler(), s))
        compiler = lib.compiler()
        lib.compile(compiler, schema)
        cached, _ = _ms(lambda s=schema, c=compiler: lib.compile(c, s))
        matchers = [lib.matcher(compiled) for _ in range(BATCH)]
        bitmask = lib.bitmask(BATCH, vocab)
        step_ms: list[float] = []
        for _ in range(steps):
            logits = torch.randn(BATCH, vocab, generator=generator)
            start = time.perf_counter()
            lib.fill(matchers, bitmask)
            lib.apply(logits, bitmask)
            tokens = logits.argmax(dim=-1).tolist()
            for matcher, token in zip(matchers, tokens):
                lib.accept(matcher, token)
            step_ms.append((time.perf_counter() - start) * 1000)
            # A finished document starts over, so every step measures eight live rows.
            matchers = [lib.matcher(compiled) if lib.done(m) else m for m in matchers]
        results[name] = {
            "cold_ms": cold,
            "cached_ms": cached,
            "step_p50_ms": statistics.median(step_ms),
            "step_max_ms": max(step_ms),
        }
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=40, help="decode steps measured per schema")
    args = parser.parse_args()
    torch.set_num_threads(1)
    tokenizer = _tokenizer()
    vocab = len(tokenizer)
    print(f"tokenizer vocab {vocab}, batch {BATCH}, {args.steps} steps per schema, one thread")
    for cls in (_XGrammar, _LLGuidance):
        setup, lib = _ms(lambda c=cls: c(tokenizer, vocab))
        print(f"\n{lib.name}: tokenizer setup {setup:.0f} ms")
        print(f"{'schema':<10} {'cold ms':>9} {'cached ms':>10} {'step p50 ms':>12} {'step max ms':>12}")
        for name, r in measure(lib, vocab, args.steps).items():
            print(f"{name:<10} {r['cold_ms']:>9.2f} {r['cached_ms']:>10.3f} {r['step_p50_ms']:>12.2f} "
                  f"{r['step_max_ms']:>12.2f}")


if __name__ == "__main__":
    main()
