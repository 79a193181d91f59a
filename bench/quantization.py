"""Precision and quantization variants of the default generator side by side: speed, memory
and quality, so a deployment can pick `MAAS_DTYPE` / `MAAS_QUANTIZATION` knowingly.

Each variant is loaded through `reference_server.loading.load_model` (the server's own code
path) in a fresh child process, one after another, so its memory figures are its own and no
two variants compete for the cores. Per variant:

- decode speed: output tokens/s of `model.generate()` for one prompt and for a left-padded
  batch of 8, each exactly `--output-len` tokens, greedy (median of `--repeats` runs);
- memory: the serialized state dict (what the weights take) and how much the process's
  resident memory grew while loading;
- perplexity on `bench/data/perplexity.txt` (plain English written for this project, so no
  model has seen it in training);
- greedy agreement: the fraction of the first 32 greedy tokens of the batch-of-8 run that
  equal float32's at the same position. A single early divergence changes every later
  token, so this is a strict measure.

float16 is included only where CUDA is available (it is not supported on CPU); int8 is
dynamic quantization of the Linear layers and runs on CPU only.

    python -m bench.quantization                  # float32, bfloat16, int8 (+ float16 on CUDA)
    python -m bench.quantization --quick
"""

from __future__ import annotations

import argparse
import gc
import io
import math
import statistics
import sys
import time
import warnings
from typing import Any

from bench._common import GENERATOR, in_child, machine, perplexity_text, prompts, table

AGREEMENT_TOKENS = 32


def measure(dtype: str, quantization: str | None, device: str, threads: int, output_len: int,
            repeats: int) -> dict[str, Any]:
    """Every figure for one variant; runs in its own process."""
    import psutil
    import torch

    from reference_server.loading import configure_threads, default_specs, load_model
    from reference_server.settings import Settings

    warnings.filterwarnings("ignore")
    configure_threads(threads)
    spec = next(s for s in default_specs() if s.id == GENERATOR)
    spec.dtype, spec.quantization = dtype, quantization  # type: ignore[assignment]
    process = psutil.Process()
    gc.collect()
    rss_before = process.memory_info().rss
    loaded = load_model(spec, cache_dir=Settings().cache_dir, device=device)
    gc.collect()
    rss_delta = process.memory_info().rss - rss_before
    buffer = io.BytesIO()
    torch.save(loaded.model.state_dict(), buffer)

    tok, model = loaded.tokenizer, loaded.model
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id

    def generate(texts: list[str]) -> tuple[float, list[list[int]]]:
        rows = [list(tok(t, add_special_tokens=True)["input_ids"]) for t in texts]
        width = max(len(r) for r in rows)
        ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows], device=device)
        mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows], device=device)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=output_len,
                             min_new_tokens=output_len, do_sample=False, pad_token_id=pad)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        elapsed = time.perf_counter() - start
        return len(rows) * output_len / elapsed, out[:, width:].tolist()

    batch = prompts(8)
    with torch.inference_mode():
        generate(batch[:2])  # warm-up
        single = statistics.median(generate(batch[:1])[0] for _ in range(repeats))
        runs = [generate(batch) for _ in range(repeats)]
        ids = tok(perplexity_text(), add_special_tokens=True, return_tensors="pt")["input_ids"].to(device)
        loss = float(model(input_ids=ids, labels=ids).loss)
    return {
        "dtype": loaded.dtype, "quantization": quantization, "device": device,
        "weights_mb": buffer.getbuffer().nbytes / 2**20, "rss_delta_mb": rss_delta / 2**20,
        "single_tps": single, "batch_tps": statistics.median(r[0] for r in runs),
        "perplexity": math.exp(loss), "perplexity_tokens": int(ids.shape[1]),
        "greedy": [row[:AGREEMENT_TOKENS] for row in runs[0][1]],
    }


def agreement(tokens: list[list[int]], reference: list[list[int]]) -> float:
    pairs = [(a, b) for row, ref in zip(tokens, reference) for a, b in zip(row, ref)]
    return sum(a == b for a, b in pairs) / len(pairs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--output-len", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3, help="Speed runs per variant (median).")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available).")
    parser.add_argument("--quick", action="store_true", help="One speed run per variant, 32 tokens.")
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats, args.output_len = 1, AGREEMENT_TOKENS
    if args.output_len < AGREEMENT_TOKENS:
        parser.error(f"--output-len must be at least {AGREEMENT_TOKENS} (the greedy agreement window)")

    from reference_server.loading import resolve_device

    device = resolve_device(args.device)
    variants: list[tuple[str, str | None, str]] = [("float32", None, device), ("bfloat16", None, device)]
    if device.startswith("cuda"):
        variants.append(("float16", None, device))
    variants.append(("float32", "int8", "cpu"))

    print(f"# quantization: {GENERATOR}, {args.output_len} output tokens, {args.threads} threads; {machine()}",
          file=sys.stderr)
    results = []
    for dtype, quantization, dev in variants:
        print(f"measuring {quantization or dtype} on {dev}...", file=sys.stderr)
        results.append(in_child(measure, dtype, quantization, dev, args.threads, args.output_len, args.repeats))

    reference = results[0]["greedy"]
    rows = [[r["quantization"] or r["dtype"], r["device"], r["weights_mb"], r["rss_delta_mb"], r["single_tps"],
             r["batch_tps"], r["perplexity"], f"{agreement(r['greedy'], reference):.1%}"] for r in results]
    print(table(["variant", "device", "weights MB", "RSS +MB", "tok/s single", "tok/s batch 8",
                 "perplexity", f"greedy = float32 ({AGREEMENT_TOKENS} tok)"], rows))
    print(f"\nperplexity over {results[0]['perplexity_tokens']} tokens of bench/data/perplexity.txt")
    return 0


if __name__ == "__main__":
    sys.exit(main())
