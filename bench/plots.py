"""Plots for the docs, drawn from real runs (matplotlib, no display needed).

    python -m bench.serving --json bench/results/serving.json      # a real serving run
    python -m bench.plots serving bench/results/serving.json docs/img/serving.png
    python -m bench.plots record-fine-tune bench/results/fine-tune.json   # a real job's events
    python -m bench.plots fine-tune bench/results/fine-tune.json docs/img/fine-tune-loss.png
    python -m bench.tenants --out bench/results/tenants.json              # a real tenants run
    python -m bench.plots tenants bench/results/tenants.json docs/img/tenants.png

`make plots` runs them all. Each figure is labelled with the machine it ran on, from the
results file, so a figure is never read without its conditions.
"""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

DATA = Path(__file__).resolve().parents[1] / "tests" / "data"


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def serving(results: dict[str, Any], out: Path) -> None:
    """Throughput (server and the in-process references) and latency against concurrency for
    the closed-loop workloads (short, mixed), from `bench.serving --json`."""
    plt = _pyplot()
    workloads = {name: results["workloads"][name]["levels"] for name in ("short", "mixed")
                 if name in results.get("workloads", {})}
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    colours = {"short": "#3b5bdb", "mixed": "#e8590c"}
    levels: list[int] = []
    for name, runs in workloads.items():
        runs = sorted(runs, key=lambda r: r["concurrency"])
        xs = [r["concurrency"] for r in runs]
        levels = sorted(set(levels) | set(xs))
        colour = colours[name]
        left.plot(xs, [r["output_tps"] for r in runs], marker="o", color=colour, label=f"{name}: server")
        if "limit_tps" in runs[0]:
            left.plot(xs, [r["limit_tps"] for r in runs], marker="s", linestyle="--", color=colour,
                      label=f"{name}: fixed batch generate()")
            left.plot(xs, [r["naive_tps"] for r in runs], linestyle=":", color=colour, label=f"{name}: naive")
        for key, marker, label in (("ttft", "o", "TTFT"), ("tpot", "x", "TPOT")):
            right.plot(xs, [r["stats"][key]["p50"] * 1000 for r in runs], marker=marker, color=colour,
                       linestyle="-" if key == "ttft" else "--", label=f"{name}: {label} median")
    left.set(xlabel="concurrent streams", ylabel="output tokens / s", title="Throughput", xscale="log", xticks=levels)
    right.set(xlabel="concurrent streams", ylabel="ms", title="Latency", xscale="log", yscale="log", xticks=levels)
    from matplotlib.ticker import FuncFormatter, NullFormatter

    plain = FuncFormatter(lambda value, _: f"{value:g}" if f"{value:g}"[0] in "125" else "")
    for axis in (left, right):
        axis.set_xticklabels([str(level) for level in levels])
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7)
        axis.xaxis.set_minor_formatter(NullFormatter())
    right.yaxis.set_major_formatter(plain)
    right.yaxis.set_minor_formatter(plain)
    args = results["args"]
    threads = f"{args['threads']} thread" + ("" if str(args["threads"]) == "1" else "s")
    fig.suptitle(f"{args['model']}, {args['output_len']} output tokens, {threads}, {args['dtype']}", fontsize=10)
    fig.text(0.5, 0.005, results.get("machine", "machine not recorded"), ha="center", fontsize=7, color="#555")
    fig.tight_layout(rect=(0, 0.04, 1, 0.95))
    fig.savefig(out, dpi=110)


def record_fine_tune(out: Path, base_url: str | None, threads: int) -> None:
    """Fine-tune the bundled encoder into a sentiment classifier and keep the job's events."""
    from bench._common import EMBEDDER, machine, server
    from maas_sdk import MaaS

    host = machine()
    with server(EMBEDDER, threads, base_url) as url, MaaS(base_url=url, timeout=120) as client:
        train = client.files.upload(DATA / "sentiment_train.jsonl")
        valid = client.files.upload(DATA / "sentiment_validation.jsonl")
        started = time.monotonic()
        job = client.fine_tuning.jobs.create(model=EMBEDDER, training_file=train.id, validation_file=valid.id,
                                             hyperparameters={"n_epochs": 2}, seed=42)
        job = job.wait(poll_interval=1, timeout=3600)
        events = list(client.fine_tuning.jobs.events(job.id, limit=100))[::-1]
    out.write_text(json.dumps({
        "machine": host, "seconds": round(time.monotonic() - started, 1), "job": job.model_dump(mode="json"),
        "events": [event.model_dump(mode="json") for event in events],
    }, indent=1))
    print(f"{job.id} {job.status} in {time.monotonic() - started:.0f} s: {len(events)} events -> {out}",
          file=sys.stderr)


def fine_tune(record: dict[str, Any], out: Path) -> None:
    """The training loss of every step and the validation loss of every epoch, from the events."""
    plt = _pyplot()
    metrics = [e["data"] for e in record["events"] if e["type"] == "metrics" and e.get("data")]
    steps = [m for m in metrics if "learning_rate" in m]
    epochs = [m for m in metrics if "valid_loss" in m]
    fig, axis = plt.subplots(figsize=(8, 4.2))
    axis.plot([m["step"] for m in steps], [m["train_loss"] for m in steps], color="#3b5bdb", alpha=0.8,
              label="training loss (each step)")
    if epochs:
        axis.plot([m["step"] for m in epochs], [m["valid_loss"] for m in epochs], marker="o", color="#e8590c",
                  label="validation loss (each epoch)")
        for m in epochs:
            if "valid_accuracy" in m:
                axis.annotate(f"validation accuracy {m['valid_accuracy']:.2f}", (m["step"], m["valid_loss"]),
                              textcoords="offset points", xytext=(-40, 10), fontsize=8)
    job = record["job"]
    axis.set(xlabel="step", ylabel="loss",
             title=f"{job['model']} fine-tuned as a classifier: {len(steps)} steps, {record['seconds']:.0f} s")
    axis.grid(alpha=0.3)
    axis.legend()
    fig.text(0.5, 0.005, f"{record['machine']}; a shared machine, other work running", ha="center", fontsize=8,
             color="#555")
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    fig.savefig(out, dpi=110)


def tenants(results: dict[str, Any], out: Path) -> None:
    """Output tokens per second of 8 clients against the number of fine-tuned adapters they are
    spread over (0: the base model), from `bench.tenants --out`, with the targets' lines."""
    plt = _pyplot()
    runs = results["throughput"]
    base = runs["base model"]["tok_s"]
    points = sorted((0 if name == "base model" else int(name.split()[0]), run["tok_s"]) for name, run in runs.items())
    fig, axis = plt.subplots(figsize=(8, 4.2))
    xs = [n for n, _ in points]
    axis.plot(xs, [tps for _, tps in points], marker="o", color="#3b5bdb", label="8 clients, 64 output tokens each")
    slots = f"MAAS_MAX_LORAS={results['max_loras']}"
    for ratio, until, colour, label in ((0.8, 8, "#e8590c", "target 0.8x base (8 adapters)"),
                                        (0.6, max(xs), "#868e96", f"target 0.6x base ({max(xs)} adapters, {slots})")):
        axis.hlines(ratio * base, 0, until, linestyles="--", colors=colour, label=label)
    for n, tps in points:
        axis.annotate(f"{tps:.0f} tok/s ({tps / base:.2f}x)", (n, tps), textcoords="offset points", xytext=(4, 8),
                      fontsize=8)
    axis.set(xlabel="fine-tuned adapters the clients are spread over (0: the base model)", ylabel="output tokens / s",
             title=f"One base model, {results['adapters']} adapters registered, {results['dtype']} dtype, "
                   f"{results['threads']} threads", ylim=(0, base * 1.25), xticks=xs)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8, loc="lower left")
    fig.text(0.5, 0.005, textwrap.fill(results.get("machine", "machine not recorded"), 140), ha="center", fontsize=7,
             color="#555")
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.savefig(out, dpi=110)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    draw_serving = commands.add_parser("serving", help="Draw a bench.serving --json file.")
    draw_fine_tune = commands.add_parser("fine-tune", help="Draw a record-fine-tune file.")
    draw_tenants = commands.add_parser("tenants", help="Draw a bench.tenants --out file.")
    for command in (draw_serving, draw_fine_tune, draw_tenants):
        command.add_argument("results", type=Path)
        command.add_argument("out", type=Path)
    record = commands.add_parser("record-fine-tune", help="Run a fine-tuning job and keep its events.")
    record.add_argument("out", type=Path)
    record.add_argument("--base-url", help="Use this running server (…/v1) instead of starting one.")
    record.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    if args.command == "record-fine-tune":
        record_fine_tune(args.out, args.base_url, args.threads)
        return 0
    draw = {"serving": serving, "fine-tune": fine_tune, "tenants": tenants}[args.command]
    draw(json.loads(args.results.read_text()), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
