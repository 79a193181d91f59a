"""The slice sizer: it learns what prompt tokens add to a step, including what each token's
attention to the cached tokens before it adds, and sizes slices to the decode-step budget."""

from __future__ import annotations

import pytest

from reference_server.inference.engine.slicing import DEFAULT_TOKEN_SECONDS, SliceSizer, attended_positions

DECODE_S = 0.040
PER_TOKEN_S = 0.0008  # what a prompt token's linear layers add
PER_THOUSAND_S = 0.0012  # what attending to a thousand cached positions adds


def _added(start: int, tokens: int) -> float:
    return PER_TOKEN_S * tokens + PER_THOUSAND_S * attended_positions(start, tokens)


def _taught(steps: list[tuple[int, int]]) -> SliceSizer:
    sizer = SliceSizer(ratio=1.0, min_tokens=16, max_tokens=512)
    sizer.decoded(DECODE_S)
    for start, tokens in steps:
        sizer.prefilled([(start, tokens)], DECODE_S + _added(start, tokens))
    return sizer


def test_attended_positions_count_each_new_token_against_everything_before_it() -> None:
    assert attended_positions(0, 1) == pytest.approx(0.001)
    assert attended_positions(0, 3) == pytest.approx((1 + 2 + 3) / 1000)
    assert attended_positions(100, 2) == pytest.approx((101 + 102) / 1000)


def test_before_any_measurement_a_slice_is_the_smallest() -> None:
    sizer = SliceSizer(ratio=1.0, min_tokens=16, max_tokens=512)
    assert sizer.coefficients() is None
    assert sizer.slice_tokens(0) == 16
    sizer.decoded(DECODE_S)
    assert sizer.slice_tokens(1000) == 16


def test_the_fit_recovers_both_costs_from_slices_moving_down_a_prompt() -> None:
    sizer = _taught([(start, 40 - start // 100) for start in range(0, 2000, 100)])
    fit = sizer.coefficients()
    assert fit is not None
    assert fit[0] == pytest.approx(0.0, abs=1e-6)  # no premium per step in these steps
    assert fit[1] == pytest.approx(PER_TOKEN_S, rel=1e-3)
    assert fit[2] == pytest.approx(PER_THOUSAND_S, rel=1e-3)


def test_slices_shrink_down_a_long_prompt_and_fill_the_budget() -> None:
    sizer = _taught([(start, 40 - start // 100) for start in range(0, 2000, 100)])
    sizes = [sizer.slice_tokens(start, previous=512) for start in (0, 500, 1000, 2000)]
    assert sizes == sorted(sizes, reverse=True) and sizes[0] > sizes[-1]
    for start, n in zip((0, 500, 1000, 2000), sizes):
        if n > 16:  # not held up by the smallest slice
            assert _added(start, n) <= DECODE_S * 1.0 + 1e-9 < _added(start, n + 1)


def test_a_per_token_average_would_have_sized_late_slices_too_long() -> None:
    """What the position term is for: taught on early slices, an average cost per token
    predicts a late slice of the same length to add what an early one adds."""
    sizer = _taught([(start, 40) for start in range(0, 400, 40)])
    late = sizer.slice_tokens(1000, previous=512)
    assert 16 < late and _added(1000, late) <= DECODE_S + 1e-9
    average_per_token = sum(_added(s, 40) for s in range(0, 400, 40)) / (10 * 40)
    assert int(DECODE_S / average_per_token) > late


def test_slices_stay_within_their_bounds() -> None:
    fast = SliceSizer(ratio=1.0, min_tokens=16, max_tokens=64)
    fast.decoded(DECODE_S)
    fast.prefilled([(0, 32)], DECODE_S + 1e-6)  # prompt tokens almost free
    assert fast.slice_tokens(0, previous=64) == 64
    slow = SliceSizer(ratio=1.0, min_tokens=16, max_tokens=64)
    slow.decoded(DECODE_S)
    slow.prefilled([(0, 32)], DECODE_S * 20)  # prompt tokens very slow
    assert slow.slice_tokens(0) == 16


def test_a_negative_term_is_dropped_and_the_other_refit() -> None:
    """Noisy steps can make the two-term fit give a negative cost; the sizer then keeps the
    better one-term fit, never a negative cost (which would size slices without bound)."""
    sizer = SliceSizer(ratio=1.0, min_tokens=16, max_tokens=512)
    sizer.decoded(DECODE_S)
    sizer.prefilled([(0, 32)], DECODE_S + 0.030)
    sizer.prefilled([(1000, 32)], DECODE_S + 0.020)  # later and cheaper: b would be < 0
    fit = sizer.coefficients()
    assert fit is not None and fit[1] > 0 and fit[0] == fit[2] == 0.0
    assert 16 <= sizer.slice_tokens(3000, previous=512) < 512


def test_a_prompts_slices_at_most_double_from_one_to_the_next() -> None:
    """A fit learnt elsewhere (here: prompt tokens nearly free) must not make a new prompt's
    first slices long before its own steps have been measured."""
    sizer = SliceSizer(ratio=1.0, min_tokens=16, max_tokens=512)
    sizer.decoded(DECODE_S)
    sizer.prefilled([(0, 256)], DECODE_S + 1e-4)
    sizes = []
    previous = 0
    for _ in range(6):
        previous = sizer.slice_tokens(0, previous)
        sizes.append(previous)
    assert sizes == [16, 32, 64, 128, 256, 512]


def test_prefill_seconds_follow_the_fit_and_a_default_before_it() -> None:
    fresh = SliceSizer(ratio=1.0, min_tokens=16, max_tokens=512)
    assert fresh.prefill_seconds(0, 200) == pytest.approx(200 * DEFAULT_TOKEN_SECONDS)
    sizer = _taught([(start, 40 - start // 100) for start in range(0, 2000, 100)])
    assert sizer.prefill_seconds(1000, 300) == pytest.approx(_added(1000, 300), rel=1e-3)


def test_ride_tokens_are_the_tokens_from_position_zero_within_the_ratio() -> None:
    sizer = _taught([(start, 40 - start // 100) for start in range(0, 2000, 100)])
    n = sizer.ride_tokens()
    assert _added(0, n) <= DECODE_S < _added(0, n + 1)


def test_shortest_prefill_first_until_a_long_prompt_has_waited_its_own_prefill() -> None:
    sizer = _taught([(start, 40 - start // 100) for start in range(0, 2000, 100)])
    long_s = sizer.prefill_seconds(0, 500)
    assert sizer.priority(0, 20, 0.0) < sizer.priority(0, 500, 0.0)
    # A prompt half done counts only what is left.
    assert sizer.priority(450, 50, 0.0) < sizer.priority(0, 100, 0.0)
    assert sizer.priority(0, 500, long_s * 0.5) > sizer.priority(0, 8, 0.0)
    assert sizer.priority(0, 500, long_s) < sizer.priority(0, 8, 0.0)  # no newcomer passes it now


def test_a_premium_per_step_is_learnt_apart_and_taken_from_the_budget() -> None:
    """Where decode steps are compiled and a step with prompt tokens runs eager, carrying any
    prompt tokens costs a premium of its own; the fit learns it as such (not as a cost per
    token), and slices fill what is left of the budget after it."""
    premium = 0.010
    sizer = SliceSizer(ratio=1.0, min_tokens=16, max_tokens=512)
    sizer.decoded(DECODE_S)
    for start, tokens in [(start, 16 + (start // 100) % 5 * 8) for start in range(0, 2000, 100)]:
        sizer.prefilled([(start, tokens)], DECODE_S + premium + _added(start, tokens))
    fit = sizer.coefficients()
    assert fit is not None
    assert fit == pytest.approx((premium, PER_TOKEN_S, PER_THOUSAND_S), rel=1e-3)
    for start in (0, 300, 600):
        n = sizer.slice_tokens(start, previous=512)
        assert n > 16, "not held up by the smallest slice"
        assert premium + _added(start, n) <= DECODE_S + 1e-9 < premium + _added(start, n + 1)
    assert sizer.prefill_seconds(0, 100) == pytest.approx(premium + _added(0, 100), rel=1e-3)
    # A premium beyond the whole budget leaves the smallest slice.
    slow = SliceSizer(ratio=0.2, min_tokens=16, max_tokens=512)
    slow.decoded(DECODE_S)
    for tokens in (16, 24, 32, 40):
        slow.prefilled([(0, tokens)], DECODE_S + premium + PER_TOKEN_S * tokens)
    assert slow.slice_tokens(0, previous=512) == 16
