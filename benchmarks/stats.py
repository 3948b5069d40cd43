"""Small-sample statistics for benchmark tables: mean ± sd over seeds, paired differences with a 95% CI.

No scipy: the t quantiles are tabulated, and the paired test is an exact sign-flip permutation test (all
2^n sign patterns of the per-seed differences), which assumes only that a difference is as likely to be
positive as negative when the methods do not differ.
"""

from __future__ import annotations

import itertools
import statistics

# two-sided 95% quantiles of Student's t, by degrees of freedom
T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
        12: 2.179, 15: 2.131, 20: 2.086, 30: 2.042}


def t975(df: int) -> float:
    """The 97.5% quantile of t with df degrees of freedom (the nearest tabulated df at or below)."""
    return T975[max(k for k in T975 if k <= df)]


def mean_sd(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (n - 1); sd 0 for one value."""
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def paired(a: list[float], b: list[float]) -> dict[str, float]:
    """a - b per seed: mean, 95% t interval, exact two-sided sign-flip p-value.

    >>> r = paired([0.9, 0.8, 0.7], [0.5, 0.5, 0.5]); round(r["mean"], 3), round(r["p"], 3)
    (0.3, 0.25)
    """
    if len(a) != len(b) or len(a) < 2:
        raise ValueError(f"paired() needs two lists of the same length >= 2, got {len(a)} and {len(b)}")
    diffs = [x - y for x, y in zip(a, b)]
    mean, sd = mean_sd(diffs)
    half = t975(len(diffs) - 1) * sd / len(diffs) ** 0.5
    observed = abs(sum(diffs))
    flips = [abs(sum(s * d for s, d in zip(signs, diffs))) for signs in itertools.product((1, -1), repeat=len(diffs))]
    p = sum(f >= observed - 1e-12 for f in flips) / len(flips)
    return {"mean": mean, "low": mean - half, "high": mean + half, "p": p, "n": len(diffs)}


def verdict(result: dict[str, float]) -> str:
    """'no difference' unless the 95% interval excludes 0."""
    if result["low"] > 0:
        return "higher"
    if result["high"] < 0:
        return "lower"
    return "no difference"


def describe(result: dict[str, float], scale: float = 1.0, digits: int = 3) -> str:
    """One table cell for a paired() result: '+0.030 [+0.010, +0.050], p=0.06: higher' (values times scale).

    >>> describe(paired([0.9, 0.8, 0.7], [0.5, 0.5, 0.5]), scale=100, digits=1)
    '+30.0 [+5.2, +54.8], p=0.25: higher'
    """
    m, lo, hi = (scale * result[k] for k in ("mean", "low", "high"))
    return f"{m:+.{digits}f} [{lo:+.{digits}f}, {hi:+.{digits}f}], p={result['p']:.2f}: {verdict(result)}"
