"""Risk metrics over market-making episodes, and a CUSUM detector for regime shifts.

    records = run_episodes(policy, "rewardlab/MarketMaking-v0", seeds=range(1000, 1100))
    risk_report(records)
    # {'episodes': 100, 'mean_pnl': ..., 'pnl_std': ..., 'cvar': ..., 'alpha': 0.05, 'max_abs_inventory': ...,
    #  'sharpe_step': ..., 'sharpe_episode': ...}

Conventions (docs/market_making.md#risk-metrics): PnL is final mark-to-market PnL per episode; std is the
sample std (ddof=1); CVaR_alpha is the mean of the worst alpha fraction of episode PnLs (a PnL, so higher
is better, and negative when the tail loses); sharpe_step is mean / std of the per-step PnL changes pooled
over all steps of all episodes (per step, not annualised); sharpe_episode is mean_pnl / pnl_std.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np


def cvar(values: Iterable[float], alpha: float = 0.05) -> float:
    """Mean of the worst `alpha` fraction of `values` (lower tail), on the empirical distribution.

    With n values sorted ascending x_(1) <= ... <= x_(n) and m = alpha * n, the tail holds the floor(m) worst
    values in full and the next one with weight m - floor(m):

        CVaR = (x_(1) + ... + x_(floor m) + (m - floor m) * x_(floor m + 1)) / m

    so it is exact for any n (alpha * n below 1 gives the worst value). alpha = 1 gives the mean.
    """
    x = np.sort(np.asarray(list(values), dtype=np.float64))
    if x.size == 0:
        raise ValueError("cvar needs at least one value")
    if not 0 < alpha <= 1:
        raise ValueError(f"cvar alpha must be in (0, 1] (the tail fraction, e.g. 0.05), got {alpha!r}")
    m = alpha * x.size
    whole = int(math.floor(m + 1e-12))
    total = x[:whole].sum()
    if whole < x.size and m - whole > 1e-12:
        total += (m - whole) * x[whole]
    return float(total / m)


def risk_metrics(
    pnls: Sequence[float],
    inventory_paths: Sequence[Sequence[float]] | None = None,
    pnl_paths: Sequence[Sequence[float]] | None = None,
    alpha: float = 0.05,
) -> dict[str, float]:
    """Metrics from final episode PnLs, optionally the inventory paths (for max |inventory|) and the
    mark-to-market PnL paths starting at the reset (for the per-step Sharpe). Missing inputs give NaN."""
    pnl = np.asarray(pnls, dtype=np.float64)
    if pnl.size == 0:
        raise ValueError("risk_metrics needs at least one episode PnL")
    std = float(pnl.std(ddof=1)) if pnl.size > 1 else math.nan
    report = {
        "episodes": int(pnl.size),
        "mean_pnl": float(pnl.mean()),
        "pnl_std": std,
        "cvar": cvar(pnl, alpha),
        "alpha": alpha,
        "max_abs_inventory": math.nan,
        "sharpe_step": math.nan,
        "sharpe_episode": float(pnl.mean() / std) if std > 0 else math.nan,
    }
    if inventory_paths is not None:
        report["max_abs_inventory"] = float(max(np.max(np.abs(np.asarray(path, dtype=np.float64))) for path in inventory_paths))
    if pnl_paths is not None:
        changes = np.concatenate([np.diff(np.asarray(path, dtype=np.float64)) for path in pnl_paths])
        step_std = float(changes.std(ddof=1)) if changes.size > 1 else 0.0
        report["sharpe_step"] = float(changes.mean() / step_std) if step_std > 0 else math.nan
    return report


def risk_report(records: Sequence[dict[str, Any]], alpha: float = 0.05) -> dict[str, float]:
    """risk_metrics of `run_episodes` records (baselines.py)."""
    return risk_metrics([r["pnl"] for r in records], [r["inventory_path"] for r in records],
                        [r["pnl_path"] for r in records], alpha)


class RegimeShiftDetector:
    """Page's CUSUM for a change in the mean or the variance of a series, one value at a time.

    Each value x is standardised, z = (x - mean) / std, with `mean` and `std` given or estimated from the
    first `warmup` values (no alarm during the warmup; by default mean = 0, the null hypothesis of a
    driftless price, and std estimated). Four one-sided CUSUMs S <- max(0, S + llr) then accumulate the
    log-likelihood ratio of one observation under a Gaussian alternative against N(0, 1):

        variance up    (std x r):   llr = -ln r + z^2 / 2 * (1 - 1 / r^2)
        variance down  (std / r):   llr = +ln r + z^2 / 2 * (1 - r^2)
        mean up / down (by m std):  llr = +-m * z - m^2 / 2

    with r = sigma_ratio and m = mean_shift. The first time one of them exceeds `threshold` the detector
    flags: `alarm` is True, `alarm_step` the 0-based index of that value, `alarm_kind` which CUSUM fired.
    It keeps flagging only once; `reset()` starts over. A higher threshold means fewer false alarms and a
    longer delay (docs/market_making.md measures both on the environment).
    """

    KINDS = ("variance_up", "variance_down", "mean_up", "mean_down")

    def __init__(self, threshold: float = 15.0, sigma_ratio: float = 2.5, mean_shift: float = 0.5, warmup: int = 40,
                 mean: float | None = 0.0, std: float | None = None):
        if not threshold > 0:
            raise ValueError(f"RegimeShiftDetector threshold must be > 0, got {threshold!r}")
        if not sigma_ratio > 1:
            raise ValueError(f"RegimeShiftDetector sigma_ratio must be > 1 (the variance change to detect), got {sigma_ratio!r}")
        if not mean_shift > 0:
            raise ValueError(f"RegimeShiftDetector mean_shift must be > 0 (in units of std), got {mean_shift!r}")
        if std is not None and not std > 0:
            raise ValueError(f"RegimeShiftDetector std must be > 0 or None (estimate it), got {std!r}")
        if (mean is None or std is None) and warmup < 2:
            raise ValueError(f"RegimeShiftDetector warmup must be >= 2 to estimate mean/std, got {warmup!r}; or pass both")
        self.threshold, self.sigma_ratio, self.mean_shift = float(threshold), float(sigma_ratio), float(mean_shift)
        self.warmup = int(warmup) if (mean is None or std is None) else 0
        self.given_mean, self.given_std = mean, std
        self.reset()

    def reset(self) -> None:
        self.step = 0
        self.mean, self.std = self.given_mean, self.given_std
        self._warm: list[float] = []
        self.statistics = dict.fromkeys(self.KINDS, 0.0)
        self.alarm = False
        self.alarm_step: int | None = None
        self.alarm_kind: str | None = None

    def update(self, x: float) -> bool:
        """Feed one value; True only on the step the alarm is raised."""
        index = self.step
        self.step += 1
        if index < self.warmup:
            self._warm.append(float(x))
            if index == self.warmup - 1:
                warm = np.asarray(self._warm)
                if self.given_mean is None:
                    self.mean = float(warm.mean())
                if self.given_std is None:
                    self.std = float(warm.std(ddof=1)) or 1e-12
            return False
        z = (float(x) - self.mean) / self.std
        r, m = self.sigma_ratio, self.mean_shift
        llr = {
            "variance_up": -math.log(r) + 0.5 * z * z * (1.0 - 1.0 / (r * r)),
            "variance_down": math.log(r) + 0.5 * z * z * (1.0 - r * r),
            "mean_up": m * z - 0.5 * m * m,
            "mean_down": -m * z - 0.5 * m * m,
        }
        for kind in self.KINDS:
            self.statistics[kind] = max(0.0, self.statistics[kind] + llr[kind])
        if self.alarm:
            return False
        kind = max(self.KINDS, key=self.statistics.__getitem__)
        if self.statistics[kind] > self.threshold:
            self.alarm, self.alarm_step, self.alarm_kind = True, index, kind
            return True
        return False

    def run(self, series: Iterable[float]) -> int | None:
        """reset(), feed the whole series, return alarm_step (None when it never flagged)."""
        self.reset()
        for x in series:
            self.update(x)
        return self.alarm_step
