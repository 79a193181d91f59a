"""Plots for the docs, drawn from real runs (matplotlib, no display needed).

    python -m bench.serving --json bench/results/serving.json      # a real serving run
    python -m bench.plots serving bench/results/serving.json docs/img/serving.png
    python -m bench.plots record-fine-tune bench/results/fine-tune.json   # a real job's events
    python -m bench.plots fine-tune bench/results/fine-tune.json docs/img/fine-tune-loss.png

`make plots` runs all four. Each figure is labelled with the machine it ran on, from the
results file, so a figure is never read without its conditions.
"""

from __future__ import annotations

import argparse
import json
import sys
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
    """Throughput and latency against concurrency, from `bench.serving --json`."""
    plt = _pyplot()
    runs = sorted(results["runs"], key=lambda r: r["concurrency"])
    levels = [r["concurrency"] for r in runs]
    ms = [{k: {q: v * 1000 for q, v in s.items()} for k, s in r["stats"].items()} for r in runs]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    left.plot(levels, [r["output_tps"] for r in runs], marker="o", color="#3b5bdb")
    left.set(xlabel="concurrent streams", ylabel="output tokens / s", title="Throughput", xscale="log", xticks=levels)
    left.set_xticklabels([str(level) for level in levels])
    for key, label, colour in (("ttft", "time to first token", "#e8590c"), ("tpot", "time per output token", "#2f9e44")):
        right.plot(levels, [m[key]["p50"] for m in ms], marker="o", color=colour, label=f"{label}, median")
        right.plot(levels, [m[key]["p99"] for m in ms], marker="x", linestyle="--", color=colour, label=f"{label}, p99")
    right.set(xlabel="concurrent streams", ylabel="ms", title="Latency", xscale="log", yscale="log", xticks=levels)
    right.set_xticklabels([str(level) for level in levels])
    right.legend(fontsize=8)
    from matplotlib.ticker import FuncFormatter, NullFormatter

    plain = FuncFormatter(lambda value, _: f"{value:g}" if f"{value:g}"[0] in "125" else "")
    for axis in (left, right):
        axis.grid(alpha=0.3)
        axis.xaxis.set_minor_formatter(NullFormatter())
    right.yaxis.set_major_formatter(plain)
    right.yaxis.set_minor_formatter(plain)
    args = results["args"]
    threads = f"{args['threads']} thread" + ("" if str(args["threads"]) == "1" else "s")
    fig.suptitle(f"{args['model']}, {args['num_requests']} requests x {args['output_len']} tokens, "
                 f"{threads}, {args['dtype']}", fontsize=10)
    fig.text(0.5, 0.005, f"{results.get('machine', 'machine not recorded')}; a shared machine, other work running",
             ha="center", fontsize=8, color="#555")
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    draw_serving = commands.add_parser("serving", help="Draw a bench.serving --json file.")
    draw_fine_tune = commands.add_parser("fine-tune", help="Draw a record-fine-tune file.")
    for command in (draw_serving, draw_fine_tune):
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
    draw = serving if args.command == "serving" else fine_tune
    draw(json.loads(args.results.read_text()), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
