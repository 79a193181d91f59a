"""Precision and quantization variants of the default generator side by side: speed, memory
and quality, so a deployment can pick `MAAS_DTYPE` / `MAAS_QUANTIZATION` knowingly.

Each variant is loaded through `reference_server.inference.loading.load_model` (the server's own code
path) in its own child process, one after another, so its memory figures are its own. The
speed runs then take turns across the variants (each child idle while another runs), so
drift in the machine's speed hits every variant alike. Per variant:

- decode speed: output tokens/s of `model.generate()` for one prompt and for a left-padded
  batch of 8, each exactly `--output-len` tokens, greedy (median of `--repeats` runs);
- memory: the serialized state dict (what the weights take), and how much the process's
  resident memory grew from before loading to after a first short generation, split into
  private memory and file-backed pages (memory-mapped safetensors weights, shared with the
  page cache, and library code paged in by the first forward pass);
- perplexity on `bench/data/perplexity.txt` (plain English written for this project, so no
  model has seen it in training);
- greedy agreement: the fraction of the first 32 greedy tokens of a batch-of-8 run that
  equal float32's at the same position. A single early divergence changes every later
  token, so this is a strict measure; next to it, the same count teacher-forced: along
  float32's own 32 tokens, how often the variant's most likely next token is float32's
  (each position judged on its own, no divergence carried over).

float16 is included only where CUDA is available (it is not supported on CPU); the last row,
"int8 rounding only", is float32 with every weight rounded to int8 and back (float32 memory and
speed; it shows what the rounding of the weights alone does to quality). int8 and int4
are weight-only quantization (`reference_server/inference/loading/quantize.py`: int8 in a
float32 model, int4 in a bfloat16 one) and run on CPU only. The last columns compare each variant with float32 against
the quality targets: teacher-forced agreement >= 95% and perplexity within 1%. Greedy
agreement is reported but is no target: it measures chance more than quality (one near-tie
that flips early moves every later token of that prompt).

    python -m bench.quantization                  # float32, bfloat16, int8, int4 (+ float16 on CUDA)
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

from bench._common import GENERATOR, child, machine, perplexity_text, prompts, table

AGREEMENT_TOKENS = 32
# Quality targets against float32: teacher-forced agreement and perplexity.
FORCED_TARGET, PERPLEXITY_TARGET = 0.95, 0.01
# Not a serving variant: float32 whose weights are rounded to int8 and back, to tell how much of
# int8's divergence from float32 the weights' rounding causes on its own.
ROUNDED_ONLY = "int8 rounding only"


# The child process's variant, kept between calls.
_state: dict[str, Any] = {}


def load(dtype: str, quantization: str | None, device: str, threads: int, output_len: int) -> dict[str, Any]:
    """Load one variant in this (child) process; return its memory figures."""
    import psutil
    import torch

    from reference_server.inference.loading import configure_threads, default_specs, load_model
    from reference_server.settings import Settings

    warnings.filterwarnings("ignore")
    configure_threads(threads)
    spec = next(s for s in default_specs() if s.id == GENERATOR)
    simulated = quantization == ROUNDED_ONLY
    spec.dtype, spec.quantization = dtype, None if simulated else quantization  # type: ignore[assignment]
    process = psutil.Process()
    gc.collect()
    before = process.memory_info()
    loaded = load_model(spec, cache_dir=Settings().cache_dir, device=device)
    if simulated:
        _round_weights_to_int8(loaded.model)
    _state.update(torch=torch, loaded=loaded, device=device, output_len=output_len)
    # Warm-up in both shapes timed later (first calls are slow, bfloat16's especially); it
    # also pages in every weight.
    generate(prompts(1))
    generate(prompts(8))
    gc.collect()
    after = process.memory_info()
    buffer = io.BytesIO()
    torch.save(loaded.model.state_dict(), buffer)
    return {"variant": quantization or loaded.dtype, "device": device, "weights_mb": buffer.getbuffer().nbytes / 2**20,
            "private_mb": (_private(after) - _private(before)) / 2**20,
            "shared_mb": (_shared(after) - _shared(before)) / 2**20}


def _round_weights_to_int8(model: Any) -> None:
    """Every Linear weight (the tied head and embedding with it) replaced by its int8
    per-channel value, dequantized, in float32: int8's weight error with float32 arithmetic."""
    import torch

    from reference_server.inference.loading.quantize import int8_per_channel

    with torch.no_grad():
        for module in model.modules():
            if type(module) is torch.nn.Linear:
                q, scale = int8_per_channel(module.weight)
                module.weight.copy_(q.float() * scale[:, None])


def generate(texts: list[str]) -> tuple[float, list[list[int]]]:
    """Output tokens/s of one left-padded greedy `generate()` over `texts`, and the tokens."""
    torch, loaded, device, output_len = _state["torch"], _state["loaded"], _state["device"], _state["output_len"]
    tok = loaded.tokenizer
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    rows = [list(tok(t, add_special_tokens=True)["input_ids"]) for t in texts]
    width = max(len(r) for r in rows)
    ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows], device=device)
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows], device=device)
    with torch.inference_mode():
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        out = loaded.model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=output_len,
                                    min_new_tokens=output_len, do_sample=False, pad_token_id=pad)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        elapsed = time.perf_counter() - start
    return len(rows) * output_len / elapsed, out[:, width:].tolist()


def quality(reference: list[list[int]] | None = None) -> dict[str, Any]:
    """Perplexity on the fixed text, the greedy tokens of the batch of 8 and, given float32's
    tokens, how often this variant's argmax along them is float32's next token."""
    torch, loaded, device = _state["torch"], _state["loaded"], _state["device"]
    ids = loaded.tokenizer(perplexity_text(), add_special_tokens=True, return_tensors="pt")["input_ids"].to(device)
    with torch.inference_mode():
        loss = float(loaded.model(input_ids=ids, labels=ids).loss)
    greedy = [row[:AGREEMENT_TOKENS] for row in generate(prompts(8))[1]]
    out: dict[str, Any] = {"perplexity": math.exp(loss), "perplexity_tokens": int(ids.shape[1]), "greedy": greedy}
    if reference is not None:
        out["forced"] = teacher_forced(prompts(8), reference)
    return out


def teacher_forced(texts: list[str], reference: list[list[int]]) -> float:
    """The share of positions of `reference` (a continuation of each text) where this variant's
    most likely next token, given the text and the reference so far, is the reference's."""
    torch, loaded, device = _state["torch"], _state["loaded"], _state["device"]
    tok = loaded.tokenizer
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    rows = [list(tok(t, add_special_tokens=True)["input_ids"]) + ref for t, ref in zip(texts, reference)]
    width = max(len(r) for r in rows)
    ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows], device=device)
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows], device=device)
    with torch.inference_mode():
        logits = loaded.model(input_ids=ids, attention_mask=mask).logits
    n = len(reference[0])
    predicted = logits[:, width - n - 1 : width - 1].argmax(-1).cpu()
    return float((predicted == torch.tensor(reference)).float().mean())


def _shared(mem: Any) -> int:
    """Resident pages backed by files (Linux): safetensors weights are memory-mapped, so they
    count here, shared with the page cache, as does library code paged in on first use."""
    return int(getattr(mem, "shared", 0))


def _private(mem: Any) -> int:
    return int(mem.rss) - _shared(mem)


def _meets(result: dict[str, Any], base: dict[str, Any]) -> str:
    ok = (result.get("forced", 1.0) >= FORCED_TARGET
          and abs(result["perplexity"] / base["perplexity"] - 1) <= PERPLEXITY_TARGET)
    return "yes" if ok else "no"


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

    from reference_server.inference.loading import resolve_device

    device = resolve_device(args.device)
    variants: list[tuple[str, str | None, str]] = [("float32", None, device), ("bfloat16", None, device)]
    if device.startswith("cuda"):
        variants.append(("float16", None, device))
    variants += [("float32", "int8", "cpu"), ("bfloat16", "int4", "cpu"), ("float32", ROUNDED_ONLY, device)]

    print(f"# quantization: {GENERATOR}, {args.output_len} output tokens, {args.threads} threads; {machine()}",
          file=sys.stderr)
    # One idle-when-not-called child per variant: loaded one after another (so each memory
    # figure is its own), then timed in turns, so drift in machine speed hits every variant.
    pools = [child() for _ in variants]
    try:
        results = [pool.submit(load, dtype, quantization, dev, args.threads, args.output_len).result()
                   for pool, (dtype, quantization, dev) in zip(pools, variants)]
        batch = prompts(8)
        single: list[list[float]] = [[] for _ in variants]
        batched: list[list[float]] = [[] for _ in variants]
        for _ in range(args.repeats):
            for i, pool in enumerate(pools):
                single[i].append(pool.submit(generate, batch[:1]).result()[0])
            for i, pool in enumerate(pools):
                batched[i].append(pool.submit(generate, batch).result()[0])
        reference_tokens: list[list[int]] | None = None
        for i, pool in enumerate(pools):  # float32 first: its tokens are what the others are held to
            results[i].update(pool.submit(quality, reference_tokens).result(), single_tps=statistics.median(single[i]),
                              batch_tps=statistics.median(batched[i]))
            reference_tokens = results[0]["greedy"]
    finally:
        for pool in pools:
            pool.shutdown()

    base = results[0]
    reference = base["greedy"]
    rows = [[r["variant"], r["device"], r["weights_mb"], r["private_mb"], r["shared_mb"],
             r["single_tps"], r["batch_tps"], r["perplexity"], f"{agreement(r['greedy'], reference):.1%}",
             f"{r.get('forced', 1.0):.1%}",
             f"{r['perplexity'] / base['perplexity'] - 1:+.1%}", f"{r['weights_mb'] / base['weights_mb']:.2f}x",
             f"{r['single_tps'] / base['single_tps']:.2f}x", _meets(r, base)]
            for r in results]
    print(table(["variant", "device", "weights MB", "RSS private +MB", "RSS file +MB", "tok/s single",
                 "tok/s batch 8", "perplexity", f"greedy = float32 ({AGREEMENT_TOKENS} tok)",
                 "teacher-forced = float32",
                 "perplexity vs float32", "weights vs float32", "single vs float32",
                 f"forced >= {FORCED_TARGET:.0%}, perplexity within {PERPLEXITY_TARGET:.0%}"], rows))
    print(f"\nperplexity over {results[0]['perplexity_tokens']} tokens of bench/data/perplexity.txt")
    return 0


if __name__ == "__main__":
    sys.exit(main())
