"""Decode throughput of the continuous-batching engine against plain `model.generate()`.

The engine only pays off if its per-step bookkeeping stays small next to a forward pass, so
this compares output tokens/s at concurrency 1 and 8 with the same model, prompts, thread
count and number of new tokens (EOS ignored so every run decodes exactly that many).

    python -m bench.engine_probe --threads 2 --tokens 64 --repeats 3
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from pathlib import Path

import torch

from reference_server.inference.engine.generation import GenerationEngine
from reference_server.inference.engine.sampling import SamplingParams
from reference_server.inference.loading import LoadedModel, default_specs, load_model

QUESTIONS = [
    "What is the capital of France?",
    "Write a haiku about the sea.",
    "Count from 1 to 10.",
    "Tell me a joke about cats and dogs living together.",
    "Explain gravity in one sentence.",
    "Name three primary colours.",
    "How do plants make food?",
    "Give me a tip for learning Python.",
]


def _prompts(loaded: LoadedModel, n: int) -> list[list[int]]:
    tok = loaded.tokenizer
    return [
        list(
            tok.apply_chat_template(
                [{"role": "user", "content": q}], add_generation_prompt=True, return_dict=False
            )
        )
        for q in (QUESTIONS * n)[:n]
    ]


def generate_tps(loaded: LoadedModel, prompts: list[list[int]], tokens: int) -> float:
    """Output tokens/s of one `model.generate()` call over all prompts (left-padded)."""
    tok = loaded.tokenizer
    width = max(len(p) for p in prompts)
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    start = time.perf_counter()
    with torch.inference_mode():
        out = loaded.model.generate(
            input_ids=ids,
            attention_mask=mask,
            max_new_tokens=tokens,
            min_new_tokens=tokens,
            do_sample=False,
            pad_token_id=pad,
        )
    elapsed = time.perf_counter() - start
    assert out.shape[1] - width == tokens
    return len(prompts) * tokens / elapsed


async def engine_tps(engine: GenerationEngine, prompts: list[list[int]], tokens: int) -> float:
    """Output tokens/s of the engine with all prompts submitted at once."""
    params = SamplingParams(max_tokens=tokens, temperature=0, ignore_eos=True)

    async def one(prompt: list[int]) -> int:
        handle = engine.submit(prompt, params)
        async for _ in handle:
            pass
        return handle.completion_tokens

    start = time.perf_counter()
    counts = await asyncio.gather(*(one(p) for p in prompts))
    elapsed = time.perf_counter() - start
    assert all(c == tokens for c in counts)
    return sum(counts) / elapsed


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--cache-dir", type=Path, default=Path(os.environ.get("MAAS_CACHE_DIR", "~/.cache/maas"))
    )
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    loaded = load_model(default_specs()[0], cache_dir=args.cache_dir.expanduser(), device="cpu")
    engine = GenerationEngine(loaded)
    engine.start()
    try:
        # Warm-up: the first forward passes pay one-time allocation and dispatch costs.
        warm = _prompts(loaded, 2)
        generate_tps(loaded, warm, 4)
        await engine_tps(engine, warm, 4)
        for concurrency in (1, 8):
            prompts = _prompts(loaded, concurrency)
            ratios, gen_runs, eng_runs = [], [], []
            for _ in range(args.repeats):
                # Alternate the two so drift in machine load hits both alike.
                g = generate_tps(loaded, prompts, args.tokens)
                e = await engine_tps(engine, prompts, args.tokens)
                gen_runs.append(g)
                eng_runs.append(e)
                ratios.append(e / g)
            print(
                f"concurrency {concurrency}: generate {statistics.median(gen_runs):6.1f} tok/s, "
                f"engine {statistics.median(eng_runs):6.1f} tok/s, "
                f"ratio median {statistics.median(ratios):.2f} (runs {', '.join(f'{r:.2f}' for r in ratios)})"
            )
    finally:
        await engine.stop()


if __name__ == "__main__":
    asyncio.run(main())
