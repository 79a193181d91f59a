"""Option declarations that several commands share, declared once."""

from __future__ import annotations

from typing import Annotated, Any

import typer

JSON = Annotated[bool, typer.Option("--json", help="Machine-readable JSON on stdout.")]
Model = Annotated[str | None, typer.Option("--model", "-m", envvar="MAAS_MODEL",
                                           help="Model id (default: the first served model of the right task).")]
MaxTokens = Annotated[int | None, typer.Option("--max-tokens", help="Most tokens to generate.")]
Temperature = Annotated[float | None, typer.Option("--temperature", "-t", help="0 is greedy; default 1.")]
TopP = Annotated[float | None, typer.Option("--top-p", help="Nucleus sampling mass.")]
TopK = Annotated[int | None, typer.Option("--top-k", help="Sample among the k likeliest tokens.")]
Seed = Annotated[int | None, typer.Option("--seed", help="Seed for reproducible sampling.")]
Stop = Annotated[list[str] | None, typer.Option("--stop", help="A stop sequence (repeatable, up to 4).")]


def sampling(max_tokens: int | None, temperature: float | None, top_p: float | None, top_k: int | None,
             seed: int | None, stop: list[str] | None) -> dict[str, Any]:
    """The sampling parameters that were given; the server's defaults apply to the rest."""
    given = {"max_tokens": max_tokens, "temperature": temperature, "top_p": top_p, "top_k": top_k,
             "seed": seed, "stop": stop or None}
    return {key: value for key, value in given.items() if value is not None}
