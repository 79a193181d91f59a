"""How many tokens of a long prompt a step may carry while other sequences decode.

A slice rides along a decode step and delays every decoding sequence's next token by what it
adds to the step. What a prompt token adds is not a constant: each token attends to every
token before it, so on two cores a token of a 16-token slice at position 2,000 of the
default generator costs about three times one at position 0 (measured: 0.8 ms against
2.5 ms a token in float32). A running average per token therefore lags behind a slice that
moves down a long prompt, and sized later slices too large.

`SliceSizer` models what prompt tokens add to a step as `c + a * tokens + b * token_positions`
(the last term counts, for each new token, the cached tokens it attends to) and fits `c`, `a`
and `b` to the engine's own steps by least squares with exponential forgetting, so the fit
follows a machine's speed and the model's shape. `c` is what a step pays for carrying prompt
tokens at all, whatever their number: where steps run in graphs compiled per bucket of tokens
(`compiled_decode`), a step with a slice runs in a larger bucket than the decoding rows alone
(at 24 tokens the linears took about 9 ms more than at 8 rows, on two cores), or eager beyond
the largest. Without `c` that premium is taken for a cost per token. A slice is then as long
as fits in `ratio` decode steps at the position it starts from, and at most twice the
prompt's previous slice: a prompt's first slices start small, so a fit learnt from other
steps (large prompts riding along a bigger batch, minutes ago) cannot make them long before
this prompt's own steps have corrected it.

The same fit says what a whole prompt's prefill costs, which orders the waiting prompts
(`priority`: least left first, less the time waited) and bounds what may ride along another
prompt in one step (`ride_tokens`).
"""

from __future__ import annotations

import math

# Weight the fit keeps of the past at each new step: about the last ten steps count.
FORGETTING = 0.9
# Token positions are counted in thousands, to keep the fit's two columns of one scale.
POSITIONS_SCALE = 1000.0
# A prompt token's prefill time assumed before the fit has a step to learn from (two CPU
# cores, the default generator in float32: about a millisecond).
DEFAULT_TOKEN_SECONDS = 1e-3


def attended_positions(start: int, tokens: int) -> float:
    """Cached positions the `tokens` new tokens after `start` attend to, all together
    (token j of the slice sees `start + j + 1` positions), in thousands."""
    return (tokens * start + tokens * (tokens + 1) / 2) / POSITIONS_SCALE


class SliceSizer:
    """Step times in, slice lengths out (see the module docstring). Not thread-safe: the
    engine thread alone uses it."""

    def __init__(self, ratio: float, min_tokens: int, max_tokens: int) -> None:
        self.ratio = ratio
        self.min_tokens = min_tokens
        self.max_tokens = max_tokens
        self.decode_s: float | None = None  # running average of a step that only decodes
        # Forgetting sums of the fit over the columns (1, tokens, positions): X'X and X'y.
        self._xx = [[0.0] * 3 for _ in range(3)]
        self._xy = [0.0] * 3
        self._steps = 0

    def decoded(self, elapsed: float) -> None:
        """A step that carried no prompt tokens took `elapsed` seconds."""
        self.decode_s = elapsed if self.decode_s is None else 0.8 * self.decode_s + 0.2 * elapsed

    def prefilled(self, segments: list[tuple[int, int]], elapsed: float) -> None:
        """A step that also decoded carried prompt `segments` (start, tokens) and took `elapsed`
        seconds: learn what they added."""
        if self.decode_s is None or not segments:
            return
        added = elapsed - self.decode_s
        tokens = float(sum(n for _, n in segments))
        positions = sum(attended_positions(start, n) for start, n in segments)
        x = (1.0, tokens, positions)
        for i in range(3):
            self._xy[i] = FORGETTING * self._xy[i] + x[i] * added
            for j in range(3):
                self._xx[i][j] = FORGETTING * self._xx[i][j] + x[i] * x[j]
        self._steps += 1

    def coefficients(self) -> tuple[float, float, float] | None:
        """Seconds a step with prompt tokens adds whatever their number, seconds a prompt token
        adds, and seconds a thousand attended positions add; None before any step has been
        learnt from. All three are kept at zero or more: of the least-squares fits over each
        subset of the terms, the one with no negative term that leaves the smallest squared
        error (the per-token term first where two fit alike: it sizes slices conservatively)."""
        if not self._steps:
            return None
        best: tuple[float, list[float]] | None = None
        for terms in _SUBSETS:
            solved = _solve([[self._xx[i][j] for j in terms] for i in terms], [self._xy[i] for i in terms])
            if solved is None or any(v < 0 for v in solved):
                continue
            theta = [0.0] * 3
            for i, v in zip(terms, solved):
                theta[i] = v
            # The squared error, less the constant sum of y^2: -2 theta'X'y + theta'X'X theta.
            error = sum(-2 * theta[i] * self._xy[i] + theta[i] * sum(self._xx[i][j] * theta[j] for j in range(3))
                        for i in range(3))
            if best is None or error < best[0] - 1e-15:
                best = (error, theta)
        if best is None:
            return 0.0, 0.0, 0.0
        c, a, b = best[1]
        return c, a, b

    def prefill_seconds(self, start: int, tokens: int) -> float:
        """What prefilling `tokens` prompt tokens after the first `start` would add to a step,
        from the fit (`DEFAULT_TOKEN_SECONDS` a token before there is one)."""
        fit = self.coefficients()
        if fit is None:
            return tokens * DEFAULT_TOKEN_SECONDS
        c, a, b = fit
        return c + a * tokens + b * attended_positions(start, tokens)

    def priority(self, start: int, remaining: int, waited_s: float) -> float:
        """Sort key of a prompt waiting for prefill, lowest first: its prefill left, in seconds,
        less the time it has waited. Shortest-first gives the lowest mean time to first token
        (a prompt behind a longer one waits for that one's prefill too); the credit for
        waiting bounds how long a long prompt is passed over: once it has waited as long as its
        own prefill takes, it goes before any newcomer."""
        return self.prefill_seconds(start, remaining) - waited_s

    def slice_tokens(self, start: int, previous: int = 0) -> int:
        """Tokens of a prompt whose first `start` tokens are cached that the next step may
        carry: as many as add at most `ratio` decode steps, within [min_tokens, max_tokens]
        and at most twice `previous` (the prompt's last slice; 0 for its first)."""
        return min(self._fitting(start), max(self.min_tokens, 2 * previous))

    def ride_tokens(self) -> int:
        """Prompt tokens from position 0 that add at most `ratio` decode steps to a step."""
        return self._fitting(0)

    def _fitting(self, start: int) -> int:
        fit = self.coefficients()
        if fit is None or self.decode_s is None:
            return min(self.max_tokens, self.min_tokens)  # measured from this one on
        c, a, b = fit
        budget = self.ratio * self.decode_s - c
        if budget <= 0:
            return self.min_tokens
        # added(n) - c = a*n + b*(n*start + n*(n+1)/2)/1000 <= budget, solved for n.
        quadratic = b / (2 * POSITIONS_SCALE)
        linear = a + b * (start + 0.5) / POSITIONS_SCALE
        if quadratic > 0:
            n = (-linear + math.sqrt(linear * linear + 4 * quadratic * budget)) / (2 * quadratic)
        elif linear > 0:
            n = budget / linear
        else:
            n = float(self.max_tokens)
        return min(self.max_tokens, max(self.min_tokens, int(n)))


# The fit's subsets of the terms (0: per step, 1: per token, 2: per thousand positions), the
# richest first, and among fits as good, those with the per-token term first.
_SUBSETS = ((0, 1, 2), (1, 2), (0, 1), (0, 2), (1,), (2,), (0,))


def _solve(matrix: list[list[float]], rhs: list[float]) -> list[float] | None:
    """`matrix @ x = rhs` by Gaussian elimination with partial pivoting; None when singular."""
    n = len(rhs)
    rows = [[*matrix[i], rhs[i]] for i in range(n)]
    scale = max((abs(v) for row in matrix for v in row), default=0.0)
    for col in range(n):
        pivot = max(range(col, n), key=lambda r: abs(rows[r][col]))
        if abs(rows[pivot][col]) <= 1e-12 * scale:
            return None
        rows[col], rows[pivot] = rows[pivot], rows[col]
        for r in range(n):
            if r != col:
                factor = rows[r][col] / rows[col][col]
                rows[r] = [v - factor * p for v, p in zip(rows[r], rows[col])]
    return [rows[i][n] / rows[i][i] for i in range(n)]
