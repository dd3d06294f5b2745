"""Paired statistics (pk.core.stats): properties, and known cases that must come out right."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pk.core.stats import fmt_p, paired_bootstrap, paired_difference, verdict_words

scores = st.floats(min_value=-10, max_value=10, allow_nan=False, allow_infinity=False, width=32)
pairs = st.integers(min_value=2, max_value=12).flatmap(
    lambda n: st.tuples(st.lists(scores, min_size=n, max_size=n), st.lists(scores, min_size=n, max_size=n))
)


def _close(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is b
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)


@settings(max_examples=60, deadline=None)
@given(pairs)
def test_swapping_arms_negates_the_difference_and_keeps_p(data):
    """Antisymmetry: method - baseline becomes baseline - method; interval mirrored; same p.
    (Fails on a difference computed one way round, e.g. baseline - method in one branch.)"""
    b, m = data
    ab, ba = paired_difference(b, m), paired_difference(m, b)
    assert _close(ab.mean, -ba.mean)
    assert _close(ab.low, -ba.high if ba.high is not None else None)
    assert _close(ab.high, -ba.low if ba.low is not None else None)
    assert _close(ab.p, ba.p)
    assert _close(ab.p_wilcoxon, ba.p_wilcoxon)


@settings(max_examples=60, deadline=None)
@given(pairs, st.randoms(use_true_random=False))
def test_seed_order_does_not_matter(data, rnd):
    """Reordering the pairs (seeds) together changes nothing. (Fails if pairing broke, e.g.
    sorting each arm separately.)"""
    b, m = data
    order = list(range(len(b)))
    rnd.shuffle(order)
    x, y = paired_difference(b, m), paired_difference([b[i] for i in order], [m[i] for i in order])
    for name in ("mean", "low", "high", "p", "p_wilcoxon"):
        assert _close(getattr(x, name), getattr(y, name)), name


@settings(max_examples=40, deadline=None)
@given(pairs)
def test_interval_holds_the_mean_and_p_is_a_probability(data):
    b, m = data
    s = paired_difference(b, m)
    assert s.low is not None and s.high is not None
    assert s.low - 1e-9 <= s.mean <= s.high + 1e-9
    assert s.p is not None and 0.0 <= s.p <= 1.0


def test_shifted_pair_is_significant_and_identical_pair_is_not():
    """A method that is 0.05 better on every seed, with seed noise, gives p < 0.05; an
    identical arm gives p = 1. (A test computed unpaired, on the two arms' spreads,
    would miss the shift: the seed noise 0.1 dwarfs it.)"""
    base = [0.30, 0.42, 0.21]
    shifted = [x + 0.05 + e for x, e in zip(base, [0.001, -0.002, 0.001])]
    s = paired_difference(base, shifted)
    assert s.p is not None and s.p < 0.05
    assert s.low is not None and s.low > 0
    assert verdict_words(s.mean, s.p, n=3).startswith("method better, p = ")
    same = paired_difference(base, base)
    assert same.p == 1.0 and same.mean == 0.0
    assert verdict_words(same.mean, same.p, n=3) == "no significant difference, p = 1.00"


def test_interval_matches_the_t_distribution():
    """Known figures: diffs 1, 2, 3 -> mean 2, sd 1, t(0.975, 2) = 4.303 -> [-0.484, 4.484]."""
    s = paired_difference([0, 0, 0], [1, 2, 3])
    assert s.mean == pytest.approx(2.0)
    assert s.low == pytest.approx(2 - 4.302653 / math.sqrt(3), abs=1e-5)
    assert s.high == pytest.approx(2 + 4.302653 / math.sqrt(3), abs=1e-5)
    assert s.p == pytest.approx(0.07417990, abs=1e-6)  # scipy.stats.ttest_1samp([1, 2, 3], 0)


def test_wilcoxon_only_from_six_pairs():
    assert paired_difference([0] * 5, [1, 2, 3, 4, 5]).p_wilcoxon is None
    six = paired_difference([0] * 6, [1, 2, 3, 4, 5, 6.5])
    assert six.p_wilcoxon == pytest.approx(0.03125)
    assert "Wilcoxon" in six.method


def test_one_pair_gives_no_test():
    s = paired_difference([0.3], [0.4])
    assert s.n == 1 and s.p is None and s.low is None
    assert verdict_words(s.mean, s.p, n=1) == "n = 1, no test"


def test_lower_is_better_flips_the_winner():
    assert verdict_words(-0.1, 0.001, lower_is_better=True, n=3).startswith("method better")
    assert verdict_words(-0.1, 0.001, lower_is_better=False, n=3).startswith("baseline better")


def test_bootstrap_finds_a_per_example_gain_and_not_noise():
    """One seed, 500 examples: a method right on 10% more examples is significant; the
    same scores in another order (no pairing left to exploit) against themselves are not."""
    rng = np.random.default_rng(0)
    base = (rng.random(500) < 0.5).astype(float)
    better = base.copy()
    better[np.flatnonzero(base == 0)[:50]] = 1.0
    gain = paired_bootstrap(base, better, resamples=1000)
    assert gain.mean == pytest.approx(0.1) and gain.p < 0.01 and gain.low > 0
    same = paired_bootstrap(base, base, resamples=1000)
    assert same.p == 1.0 and same.mean == 0.0
    noise = paired_bootstrap(base, rng.permutation(base), resamples=1000)
    assert noise.p > 0.05


@settings(max_examples=25, deadline=None)
@given(st.lists(st.floats(min_value=0, max_value=1, allow_nan=False), min_size=3, max_size=40), st.integers(0, 5))
def test_bootstrap_is_antisymmetric(values, shift):
    b = np.asarray(values)
    m = np.roll(b, shift) * 0.9
    x, y = paired_bootstrap(b, m, resamples=200), paired_bootstrap(m, b, resamples=200)
    assert x.mean == pytest.approx(-y.mean)
    assert x.p == pytest.approx(y.p)


def test_length_mismatch_is_refused():
    with pytest.raises(ValueError):
        paired_difference([1.0, 2.0], [1.0])
    with pytest.raises(ValueError):
        paired_bootstrap([1.0, 2.0, 3.0], [1.0, 2.0])


def test_p_formatting():
    assert fmt_p(0.41) == "0.41"
    assert fmt_p(0.003) == "0.003"
    assert fmt_p(2e-6) == "2.0e-06"
