"""Engine logprobs in OpenAI's two wire shapes: the legacy parallel lists of completions and
the per-token objects of chat completions."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from maas_sdk.protocol import ChatChoiceLogprobs, ChatTokenLogprob, CompletionLogprobs, TopLogprob
from reference_server.inference.token_strings import TokenStrings

if TYPE_CHECKING:
    from reference_server.inference.engine.sampling import TokenLogprob


class CompletionLogprobsBuilder:
    """Builds `choices[].logprobs` of a completion, piece by piece when streaming: each call
    returns the lists for the tokens given, with `text_offset` counted from the start of the
    prompt (as OpenAI counts it, echo or not)."""

    def __init__(self, strings: TokenStrings, start_offset: int) -> None:
        self._strings = strings
        self._offset = start_offset

    def prompt(self, prompt_ids: Sequence[int], scored: Sequence[TokenLogprob | None]) -> CompletionLogprobs:
        self._offset = 0
        return self._lists([(t, lp) for t, lp in zip(prompt_ids, scored)])

    def tokens(self, logprobs: Sequence[TokenLogprob]) -> CompletionLogprobs:
        return self._lists([(lp.token_id, lp) for lp in logprobs])

    def _lists(self, items: Sequence[tuple[int, TokenLogprob | None]]) -> CompletionLogprobs:
        out = CompletionLogprobs()
        top_lists: list[dict[str, float] | None] = []
        for token_id, lp in items:
            text = self._strings.text(token_id)
            out.tokens.append(text)
            out.text_offset.append(self._offset)
            self._offset += len(text)
            if lp is None:
                out.token_logprobs.append(None)
                top_lists.append(None)
                continue
            out.token_logprobs.append(lp.logprob)
            top = {self._strings.text(t): v for t, v in lp.top}
            # As OpenAI: the token's own logprob is always among its alternatives.
            top.setdefault(text, lp.logprob)
            top_lists.append(top)
        out.top_logprobs = top_lists
        return out


def merge(parts: Sequence[CompletionLogprobs]) -> CompletionLogprobs:
    out = CompletionLogprobs(top_logprobs=[])
    for part in parts:
        out.tokens += part.tokens
        out.token_logprobs += part.token_logprobs
        out.top_logprobs = [*(out.top_logprobs or []), *(part.top_logprobs or [])]
        out.text_offset += part.text_offset
    return out


def chat_logprobs(strings: TokenStrings, logprobs: Sequence[TokenLogprob], top: int) -> ChatChoiceLogprobs:
    content = []
    for lp in logprobs:
        text, raw = strings(lp.token_id)
        alternatives = []
        for token_id, value in lp.top[:top]:
            alt_text, alt_raw = strings(token_id)
            alternatives.append(TopLogprob(token=alt_text, logprob=value, bytes=alt_raw))
        content.append(ChatTokenLogprob(token=text, logprob=lp.logprob, bytes=raw, top_logprobs=alternatives))
    return ChatChoiceLogprobs(content=content, refusal=None)
