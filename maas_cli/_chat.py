"""`maas chat`: an interactive conversation that streams each answer as it is written.

The history is kept and sent with every question. Lines starting with `/` are commands
(`/reset`, `/system`, `/model`, `/exit`, `/help`). Ctrl-C during an answer stops that
answer and keeps what was written of it; Ctrl-C at the prompt clears the line; Ctrl-D
or `/exit` leaves.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any

import typer

from maas_cli._context import client, default_model, output
from maas_cli._options import JSON, MaxTokens, Model, Seed, Stop, Temperature, TopK, TopP, sampling
from maas_cli._output import Output
from maas_sdk import MaaS

HELP = ("/reset clears the conversation · /system TEXT sets the system prompt · /model ID switches model · "
        "/exit leaves · Ctrl-C stops an answer")
PROMPT = "you> "


@dataclass
class Conversation:
    model: str
    system: str | None
    params: dict[str, Any]
    turns: list[dict[str, str]] = field(default_factory=list)

    def messages(self) -> list[dict[str, str]]:
        system = [{"role": "system", "content": self.system}] if self.system else []
        return system + self.turns


def chat(
    ctx: typer.Context,
    model: Model = None,
    system: Annotated[str | None, typer.Option("--system", "-s", help="The system prompt.")] = None,
    max_tokens: MaxTokens = None,
    temperature: Temperature = None,
    top_p: TopP = None,
    top_k: TopK = None,
    seed: Seed = None,
    stop: Stop = None,
    json_: JSON = False,
) -> None:
    """Talk with a model; the answers stream as they are written."""
    out = output(ctx, json_)
    with client(ctx) as api:
        conversation = Conversation(model or default_model(api, "generate"), system,
                                    sampling(max_tokens, temperature, top_p, top_k, seed, stop))
        if not out.json:
            out.line(f"chatting with {conversation.model}. {HELP}", style="dim")
        _loop(api, conversation, out)


def _loop(api: MaaS, conversation: Conversation, out: Output) -> None:
    _enable_line_editing()
    while True:
        try:
            line = input("" if out.json else PROMPT).strip()
        except EOFError:
            if not out.json:
                out.line()
            return
        except KeyboardInterrupt:
            out.line()
            out.line("(Ctrl-D or /exit leaves)", style="dim")
            continue
        if not line:
            continue
        if line.startswith("/"):
            if not _command(api, conversation, line, out):
                return
            continue
        conversation.turns.append({"role": "user", "content": line})
        conversation.turns.append({"role": "assistant", "content": _answer(api, conversation, out)})


def _answer(api: MaaS, conversation: Conversation, out: Output) -> str:
    """Stream one answer to the terminal and return its text (as far as it got)."""
    parts: list[str] = []
    stopped = False
    try:
        with api.chat(conversation.messages(), model=conversation.model, stream=True,
                      **conversation.params) as chunks:
            for chunk in chunks:
                delta = chunk.choices[0].delta.content if chunk.choices else None
                if delta:
                    parts.append(delta)
                    if not out.json:
                        out.token(delta)
    except KeyboardInterrupt:
        stopped = True
    text = "".join(parts)
    if out.json:
        out.data({"model": conversation.model, "content": text, "stopped": stopped})
    else:
        out.line()
        if stopped:
            out.line("[stopped]", style="dim")
    return text


def _command(api: MaaS, conversation: Conversation, line: str, out: Output) -> bool:
    """Run one `/command`; False when it asks to leave."""
    name, _, argument = line.partition(" ")
    argument = argument.strip()
    if name in ("/exit", "/quit"):
        return False
    if name == "/reset":
        conversation.turns.clear()
        _note(out, "(conversation cleared)")
    elif name == "/system":
        conversation.system = argument or None
        _note(out, f"(system prompt: {argument})" if argument else "(system prompt removed)")
    elif name == "/model":
        served = [m.id for m in api.models.list().data if m.task == "generate"]
        if argument in served:
            conversation.model = argument
            _note(out, f"(model: {argument})")
        else:
            _note(out, f"(model: {conversation.model}; served: {', '.join(served)})")
    else:
        _note(out, HELP)
    return True


def _note(out: Output, text: str) -> None:
    """A remark for the person at the terminal; on stderr with --json, so stdout stays JSON lines."""
    (out.errors if out.json else out.console).print(text, style="dim", markup=False)


def _enable_line_editing() -> None:
    """Arrow keys and history at the prompt, where the platform has readline."""
    try:
        import readline  # noqa: F401 - importing it is what enables line editing in input()
    except ImportError:
        pass
