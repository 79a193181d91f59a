"""`client.score(prompt, continuation)`: how likely a model finds a continuation of a prompt.

One completion request scores it without generating anything: `prompt + continuation`
is sent with `echo=True`, `max_tokens=0` and `logprobs=1`, and the server answers with
the logprob of every token of that text (the first one null: nothing precedes it) and
the most likely alternative at each position. The tokens whose text starts at or
after the end of `prompt` (by their `text_offset`) are the continuation's; a token
that straddles the boundary counts as the continuation's. Works against any server
that implements OpenAI's legacy `echo` + `logprobs` (vLLM does).
"""

from __future__ import annotations

from pydantic import Field

from maas_sdk._core import set_request_id
from maas_sdk.protocol import Generation, ResponseModel

__all__ = ["Score", "score_of"]

# A token is the greedy choice if no alternative beats it by more than rounding.
_GREEDY_TOLERANCE = 1e-6


class Score(ResponseModel):
    """The log-probability of a continuation given a prompt.

    `logprob` is the sum of `token_logprobs` (natural log), over the continuation's
    `tokens`. `is_greedy` says whether each of them is the model's most likely next
    token, i.e. greedy decoding would have produced the continuation; None when the
    server sent no alternatives to compare with.
    """

    model: str
    logprob: float
    tokens: list[str] = Field(default_factory=list)
    token_logprobs: list[float] = Field(default_factory=list)
    is_greedy: bool | None = None

    @property
    def token_count(self) -> int:
        return len(self.tokens)


def score_of(generation: Generation, prompt_chars: int) -> Score:
    """The continuation's score from the echoed logprobs of `prompt + continuation`."""
    if not generation.choices or generation.choices[0].logprobs is None:
        raise ValueError("the server sent no logprobs: it does not support echo with logprobs")
    logprobs = generation.choices[0].logprobs
    tops = logprobs.top_logprobs or []
    tokens: list[str] = []
    values: list[float] = []
    greedy: bool | None = True
    for position, (token, offset) in enumerate(zip(logprobs.tokens, logprobs.text_offset)):
        if offset + len(token) <= prompt_chars:
            continue
        value = logprobs.token_logprobs[position]
        if value is None:
            raise ValueError("the continuation's first token starts the text, so it has no logprob")
        tokens.append(token)
        values.append(value)
        alternatives = tops[position] if position < len(tops) else None
        if not alternatives:
            greedy = None
        elif greedy is not None:
            greedy = greedy and value >= max(alternatives.values()) - _GREEDY_TOLERANCE
    if not tokens:
        raise ValueError("the server's answer holds no token of the continuation")
    score = Score(model=generation.model, logprob=sum(values), tokens=tokens, token_logprobs=values, is_greedy=greedy)
    set_request_id(score, generation.request_id)
    return score
