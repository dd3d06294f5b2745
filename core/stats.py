"""Paired statistics for baseline-vs-method comparisons (scipy.stats; imported lazily).

Pairs are runs that share everything but the component under test: the same seed (and
the same pooled matrix values, e.g. fold). A difference is always ``method - baseline``.

- Over seeds: mean difference, a 95% Student-t interval over the pairs, the paired t-test
  p-value, and the Wilcoxon signed-rank p-value where there are at least 6 pairs.
- Within one seed: a paired bootstrap over test examples (users, nodes, graphs, images),
  resampling the per-example differences with replacement (percentile interval).

Verdict words come from these figures only, never from mean ± std.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

#: Two-sided significance level behind the verdict words and the 95% intervals.
ALPHA = 0.05
#: Fewest pairs for which the Wilcoxon signed-rank test is reported.
WILCOXON_MIN_PAIRS = 6


@dataclass(frozen=True)
class PairedStats:
    """Paired difference ``method - baseline`` over ``n`` pairs.

    ``low``/``high`` bound the 95% t-interval of the mean difference; ``p`` is the
    two-sided paired t-test p-value (None when ``n < 2``); ``p_wilcoxon`` is set only for
    ``n >= 6``. With zero spread the interval collapses and p is 1 (no difference) or 0.
    """

    n: int
    mean: float
    low: float | None
    high: float | None
    p: float | None
    p_wilcoxon: float | None = None
    method: str = "95% t-interval over pairs; paired t-test"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class BootstrapStats:
    """Paired bootstrap of the mean per-example difference within one seed."""

    examples: int
    mean: float
    low: float
    high: float
    p: float
    resamples: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def paired_difference(baseline: Sequence[float], method: Sequence[float]) -> PairedStats:
    """Statistics of ``method[i] - baseline[i]``; both sequences list the same pairs in the
    same order. Antisymmetric under swapping the arms and invariant to the pairs' order."""
    if len(baseline) != len(method):
        raise ValueError(f"paired samples differ in length: {len(baseline)} vs {len(method)}")
    diffs = [float(m) - float(b) for b, m in zip(baseline, method)]
    n = len(diffs)
    if n == 0:
        raise ValueError("no pairs to compare")
    mean = math.fsum(diffs) / n
    if n == 1:
        return PairedStats(1, mean, None, None, None, None, "n = 1, no test")
    from scipy import stats

    sd = math.sqrt(math.fsum((d - mean) ** 2 for d in diffs) / (n - 1))
    p_w = None
    if sd <= 1e-15 * max(1.0, abs(mean)):
        p = 1.0 if mean == 0 else 0.0
        low = high = mean
        if n >= WILCOXON_MIN_PAIRS:
            p_w = p
    else:
        half = float(stats.t.ppf(1 - ALPHA / 2, n - 1)) * sd / math.sqrt(n)
        low, high = mean - half, mean + half
        p = float(stats.ttest_rel(method, baseline).pvalue)
        if n >= WILCOXON_MIN_PAIRS:
            p_w = 1.0 if all(d == 0 for d in diffs) else float(stats.wilcoxon(diffs).pvalue)
    method_text = "95% t-interval over pairs; paired t-test" + ("; Wilcoxon signed-rank" if p_w is not None else "")
    return PairedStats(n, mean, low, high, p, p_w, method_text)


def paired_bootstrap(baseline: Any, method: Any, *, resamples: int = 2000, seed: int = 0) -> BootstrapStats:
    """Bootstrap the mean of per-example differences ``method - baseline`` (1-D arrays of
    equal length, same example order). ``p`` is the two-sided bootstrap p-value: twice the
    smaller tail of the resampled means around 0, capped at 1."""
    import numpy as np
    from scipy import stats

    b = np.asarray(baseline, dtype=np.float64).reshape(-1)
    m = np.asarray(method, dtype=np.float64).reshape(-1)
    if b.shape != m.shape:
        raise ValueError(f"example scores differ in length: {b.shape[0]} vs {m.shape[0]}")
    if b.size < 2:
        raise ValueError("a bootstrap needs at least 2 examples")
    d = m - b
    mean = float(d.mean())
    if np.all(d == d[0]):
        return BootstrapStats(int(d.size), mean, mean, mean, 1.0 if mean == 0 else 0.0, resamples)
    res = stats.bootstrap((d,), np.mean, n_resamples=resamples, method="percentile", confidence_level=1 - ALPHA,
                          random_state=np.random.default_rng(seed), vectorized=True)
    dist = res.bootstrap_distribution
    p = min(1.0, 2.0 * min(float(np.mean(dist <= 0)), float(np.mean(dist >= 0))))
    ci = res.confidence_interval
    return BootstrapStats(int(d.size), mean, float(ci.low), float(ci.high), p, resamples)


def verdict_words(diff: float | None, p: float | None, *, lower_is_better: bool = False, n: int = 0,
                  test: str = "") -> str:
    """Words for a comparison from its paired figures: ``"method better, p = 0.003"``,
    ``"no significant difference, p = 0.41"`` or ``"n = 1, no test"``."""
    if diff is None:
        return "n/a"
    if p is None:
        return f"n = {n}, no test" if n else "no test"
    tag = f"{test}p = {fmt_p(p)}"
    if p >= ALPHA or diff == 0:
        return f"no significant difference, {tag}"
    better = diff < 0 if lower_is_better else diff > 0
    return f"{'method' if better else 'baseline'} better, {tag}"


def fmt_p(p: float) -> str:
    """p-values to two significant figures, small ones in scientific notation."""
    if p < 1e-4:
        return f"{p:.1e}"
    if p < 0.01:
        return f"{p:.4f}".rstrip("0")
    return f"{p:.2f}"
