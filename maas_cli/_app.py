"""The `maas` command tree: global options, then one command per API operation.

Each command opens a `MaaS` client from the global options (or `MAAS_BASE_URL`,
`MAAS_API_KEY`), makes its call, and prints a table or text, or JSON with `--json`.
An API error ends the command with exit code 1 and its message; a usage error with 2.
"""

from __future__ import annotations

import math
import sys
from typing import Annotated

import typer

from maas_cli import _batch, _chat, _files, _fine_tune, _usage
from maas_cli._context import Globals, client, default_model, file_id, output, report
from maas_cli._options import JSON, MaxTokens, Model, Seed, Stop, Temperature, TopK, TopP, sampling
from maas_cli._output import Output
from maas_sdk import GenerationChunk, MaaSError, __version__

app = typer.Typer(
    name="maas",
    help="Call a maas server (or any OpenAI-compatible one) from the shell.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(_files.app, name="files")
app.add_typer(_fine_tune.app, name="fine-tune")
app.add_typer(_batch.app, name="batch")


def _version(value: bool) -> None:
    if value:
        print(f"maas {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    ctx: typer.Context,
    base_url: Annotated[str | None, typer.Option("--base-url", envvar="MAAS_BASE_URL",
                                                 help="API base URL, e.g. http://127.0.0.1:8000/v1.")] = None,
    api_key: Annotated[str | None, typer.Option("--api-key", envvar="MAAS_API_KEY",
                                                help="Bearer key.", show_default=False)] = None,
    timeout: Annotated[float | None, typer.Option("--timeout", help="Seconds per request.")] = None,
    json_: JSON = False,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version.")] = False,
) -> None:
    ctx.obj = Globals(base_url=base_url, api_key=api_key, timeout=timeout, json=json_)


@app.command()
def models(ctx: typer.Context, json_: JSON = False) -> None:
    """The models the server serves."""
    out = output(ctx, json_)
    with client(ctx) as api:
        listed = api.models.list()
    if out.json:
        out.data(listed)
        return
    out.table(["id", "task", "context", "parameters", "parent"],
              [(m.id, m.task, m.context_length, m.parameters, m.parent) for m in listed.data])


def _print_chunk(out: Output, chunk: GenerationChunk) -> None:
    if out.json:
        out.data(chunk)
    elif chunk.choices:
        out.token(chunk.choices[0].text)


@app.command()
def generate(
    ctx: typer.Context,
    prompt: Annotated[str, typer.Argument(help="The text to continue; - reads it from stdin.")],
    model: Model = None,
    stream: Annotated[bool, typer.Option("--stream", help="Print tokens as they are generated.")] = False,
    max_tokens: MaxTokens = None,
    temperature: Temperature = None,
    top_p: TopP = None,
    top_k: TopK = None,
    seed: Seed = None,
    stop: Stop = None,
    json_: JSON = False,
) -> None:
    """Continue a prompt (POST /completions)."""
    out = output(ctx, json_)
    text = sys.stdin.read() if prompt == "-" else prompt
    params = sampling(max_tokens, temperature, top_p, top_k, seed, stop)
    with client(ctx) as api:
        model = model or default_model(api, "generate")
        if not stream:
            result = api.generate(text, model=model, **params)
            out.data(result) if out.json else out.line(result.text)
            return
        with api.generate(text, model=model, stream=True, **params) as chunks:
            for chunk in chunks:
                _print_chunk(out, chunk)
    if not out.json:
        out.line()


app.command("chat")(_chat.chat)


@app.command()
def embed(
    ctx: typer.Context,
    texts: Annotated[list[str], typer.Argument(help="Sentences to embed.")],
    model: Model = None,
    similarity: Annotated[bool, typer.Option("--similarity", help="Print the cosine similarity matrix.")] = False,
    json_: JSON = False,
) -> None:
    """Sentence vectors, or their cosine similarity matrix (POST /embeddings)."""
    out = output(ctx, json_)
    with client(ctx) as api:
        model = model or default_model(api, "embed")
        vectors = api.embed(texts, model=model).vectors
    if similarity:
        matrix = [[round(_cosine(a, b), 4) for b in vectors] for a in vectors]
        if out.json:
            out.data({"model": model, "texts": texts, "similarity": matrix})
        else:
            out.table(["", *(str(i) for i in range(len(texts)))],
                      [(f"{i} {text}", *(f"{value:.3f}" for value in row))
                       for i, (text, row) in enumerate(zip(texts, matrix, strict=True))])
        return
    if out.json:
        out.data({"model": model, "data": [{"index": i, "embedding": v} for i, v in enumerate(vectors)]})
        return
    out.table(["text", "dims", "vector"],
              [(text, len(v), "[" + ", ".join(f"{x:.4f}" for x in v[:4]) + ", ...]")
               for text, v in zip(texts, vectors, strict=True)])


def _cosine(a: list[float], b: list[float]) -> float:
    norm = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return sum(x * y for x, y in zip(a, b, strict=True)) / norm if norm else 0.0


@app.command()
def classify(
    ctx: typer.Context,
    texts: Annotated[list[str], typer.Argument(help="Texts to classify.")],
    model: Model = None,
    labels: Annotated[str | None, typer.Option("--labels", "-l",
                                               help="Comma-separated labels (zero-shot with any model).")] = None,
    json_: JSON = False,
) -> None:
    """The top label and every label's score for each text (POST /classifications)."""
    out = output(ctx, json_)
    candidates = [label.strip() for label in labels.split(",") if label.strip()] if labels else None
    with client(ctx) as api:
        model = model or default_model(api, "classify" if candidates is None else "embed")
        result = api.classify(texts, model=model, labels=candidates)
    if out.json:
        out.data(result)
        return
    out.table(["text", "label", "score"],
              [(texts[item.index], item.label, f"{item.score:.3f}") for item in result.data])


@app.command()
def rerank(
    ctx: typer.Context,
    query: Annotated[str, typer.Argument(help="The query.")],
    documents: Annotated[list[str], typer.Argument(help="Documents to rank by relevance to the query.")],
    model: Model = None,
    top_n: Annotated[int | None, typer.Option("--top-n", "-n", min=1, help="Show the best N only.")] = None,
    json_: JSON = False,
) -> None:
    """Documents ranked by relevance to a query, most relevant first (POST /rerank)."""
    out = output(ctx, json_)
    with client(ctx) as api:
        model = model or default_model(api, "embed")
        result = api.rerank(query, documents, model=model, top_n=top_n)
    if out.json:
        out.data(result)
        return
    out.table(["rank", "score", "document"],
              [(str(rank), f"{item.relevance_score:.3f}", documents[item.index])
               for rank, item in enumerate(result.results, start=1)])


# Token backgrounds that alternate so that neighbouring tokens stay apart.
_TOKEN_STYLES = ("on grey23", "on dark_blue", "on dark_green", "on dark_red", "on purple4")


def readable(piece: str) -> str:
    """A byte-level BPE piece as it reads: its space and newline markers shown as the characters."""
    return piece.replace("\u0120", " ").replace("\u010a", "\n")


@app.command()
def tokenize(
    ctx: typer.Context,
    text: Annotated[str, typer.Argument(help="Text to split into tokens.")],
    model: Model = None,
    json_: JSON = False,
) -> None:
    """The model's tokens for a text, coloured one by one (POST /tokenize)."""
    from rich.text import Text

    out = output(ctx, json_)
    with client(ctx) as api:
        model = model or default_model(api, "generate")
        result = api.tokenize(text, model=model)
    if out.json:
        out.data(result)
        return
    pieces = Text()
    for i, piece in enumerate(result.token_strings):
        pieces.append(readable(piece), style=_TOKEN_STYLES[i % len(_TOKEN_STYLES)])
    out.console.print(pieces)
    out.line(f"{result.count} tokens: {result.tokens}")


@app.command("eval")
def evaluate(
    ctx: typer.Context,
    file: Annotated[str, typer.Argument(help="A file id, or a local JSONL file to upload first.")],
    model: Annotated[str, typer.Option("--model", "-m", help="The model to score.")],
    json_: JSON = False,
) -> None:
    """Score a model on a labelled file (POST /evaluations)."""
    out = output(ctx, json_)
    with client(ctx) as api:
        result = api.evaluate(model=model, file=file_id(api, file, purpose="evals"))
    if out.json:
        out.data(result)
        return
    out.table(["metric", "value"], [(name, f"{value:.4f}") for name, value in result.metrics.items()],
              title=f"{result.model} on {result.file} ({result.num_examples} examples)")


app.command("usage")(_usage.usage)

_PASS_THROUGH = {"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []}


@app.command(context_settings=_PASS_THROUGH, add_help_option=False)
def serve(ctx: typer.Context) -> None:
    """Start the reference server (`maas serve --help` for its options; needs the server extra)."""
    from reference_server.cli import main as server_main

    raise typer.Exit(server_main(["serve", *ctx.args]))


@app.command(context_settings=_PASS_THROUGH, add_help_option=False)
def bench(ctx: typer.Context) -> None:
    """Run a benchmark: serving, embeddings or quantization (from a source checkout)."""
    from reference_server.cli import main as server_main

    raise typer.Exit(server_main(["bench", *ctx.args]))


def run(args: list[str]) -> int:
    """Run the command line on `args`; the exit code scripts can rely on."""
    try:
        app(args=args, prog_name="maas")
    except SystemExit as exit_:
        code = exit_.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    except MaaSError as error:
        report(error, json_mode="--json" in args)
        return 1
    return 0
