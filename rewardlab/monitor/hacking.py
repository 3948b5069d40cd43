"""Catching reward hacking: proxy reward against gold reward as the policy drifts from where it started.

Over-optimisation (Gao et al., docs/algorithms.md#over-optimisation) has a recognisable shape: measured against
sqrt(KL(policy || initial policy)), the proxy reward (the learned reward model the policy is trained on)
keeps rising while the gold reward (the truth: a gold scorer or a held-out verifier) peaks and falls.
`HackingMonitor` watches the evaluations of a run and raises an alarm when, for `patience` consecutive
evaluations, the proxy stood higher and the gold score lower than at gold's best evaluation;
`plot_gold_vs_proxy` draws the picture for one or more runs.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rewardlab.monitor.plots import save_png
from rewardlab.monitor.runlog import read_metrics

logger = logging.getLogger(__name__)

# Keys the monitor writes into metrics.jsonl (one row per evaluation).
PROXY, GOLD, SQRT_KL, ALARM = "hacking/proxy", "hacking/gold", "hacking/sqrt_kl", "hacking/alarm"
LENGTH_CORR = "hacking/reward_length_corr"


def reward_length_correlation(rewards: Sequence[float], lengths: Sequence[float]) -> float:
    """Pearson correlation of reward with completion length; NaN when either is constant.

    A policy that learns "longer scores higher" from a proxy shows up here before anywhere else.

    >>> reward_length_correlation([1.0, 2.0, 3.0], [10, 20, 30])
    1.0
    >>> math.isnan(reward_length_correlation([1.0, 1.0, 1.0], [10, 20, 30]))
    True
    """
    r, n = np.asarray(rewards, dtype=np.float64), np.asarray(lengths, dtype=np.float64)
    if len(r) != len(n):
        raise ValueError(f"reward_length_correlation: {len(r)} rewards but {len(n)} lengths")
    if len(r) < 2 or r.std() == 0 or n.std() == 0:
        return float("nan")
    return float(np.clip(np.corrcoef(r, n)[0, 1], -1.0, 1.0))


@dataclass
class HackingMonitor:
    """Flags evaluations where, since the gold reward's best evaluation, the proxy reward went up and the
    gold reward went down, `patience` evaluations in a row.

    Call `update` once per evaluation with the mean proxy reward, the mean gold reward and the KL to the
    initial policy on the same samples. It returns the metrics to log (PROXY, GOLD, SQRT_KL, ALARM); ALARM
    is 1.0 at the evaluation where the streak reaches `patience` and stays 1.0 while it continues.
    Comparing with the gold peak rather than with the previous evaluation catches the common shape where
    the proxy creeps up or plateaus high while gold slides, which step-to-step noise would otherwise hide.
    Gold must be more than `tolerance` below its peak to count, so evaluation noise alone does not raise it.
    """

    patience: int = 3
    tolerance: float = 0.0
    history: list[tuple[int, float, float, float]] = field(default_factory=list)
    streak: int = 0
    alarms: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.patience < 1:
            raise ValueError(f"HackingMonitor: patience must be >= 1, got {self.patience}")
        if self.tolerance < 0:
            raise ValueError(f"HackingMonitor: tolerance must be >= 0, got {self.tolerance}")

    def update(self, step: int, proxy: float, gold: float, kl: float) -> dict[str, float]:
        if self.history:
            peak_step, peak_proxy, peak_gold, _ = max(self.history, key=lambda h: h[2])  # the first best gold
            diverging = proxy > peak_proxy and gold < peak_gold - self.tolerance
            self.streak = self.streak + 1 if diverging else 0
        self.history.append((step, float(proxy), float(gold), float(kl)))
        alarm = self.streak >= self.patience
        if alarm:
            self.alarms.append(step)
        if alarm and self.streak == self.patience:  # one warning per streak; ALARM marks every evaluation of it
            first = self.history[-self.streak][0]
            logger.warning(
                "reward hacking? step %d: the gold reward peaked at step %d (%.4f, proxy %.4f); for %d evaluations "
                "in a row (since step %d) the proxy reward was higher and the gold reward lower: proxy %.4f, gold "
                "%.4f, sqrt KL %.3f. Consider a larger beta (KL penalty), a checkpoint from near step %d, or a better reward model.",
                step, peak_step, peak_gold, peak_proxy, self.streak, first, proxy, gold, math.sqrt(max(kl, 0.0)), peak_step,
            )
        return {PROXY: float(proxy), GOLD: float(gold), SQRT_KL: math.sqrt(max(float(kl), 0.0)), ALARM: float(alarm)}

    def state_dict(self) -> dict:
        return {"history": list(self.history), "streak": self.streak, "alarms": list(self.alarms)}

    def load_state_dict(self, state: Mapping) -> None:
        self.history = [tuple(h) for h in state["history"]]
        self.streak, self.alarms = int(state["streak"]), list(state["alarms"])


def alarm_steps(run_dir: str | os.PathLike) -> list[int]:
    """Steps at which a run's monitor raised an alarm (from its metrics.jsonl)."""
    return [int(row["step"]) for row in read_metrics(run_dir) if row.get(ALARM)]


def plot_gold_vs_proxy(runs: Mapping[str, str | os.PathLike], path: str | os.PathLike, title: str = "") -> Path:
    """One PNG: gold (solid, right axis) and proxy (dashed, left axis) reward against sqrt(KL to the initial
    policy), one colour per run, alarms marked with a red cross on the gold curve. `runs` maps a label to a
    run directory."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 4.5), dpi=100)
    ax = fig.add_subplot()
    gold_ax = ax.twinx()  # proxy and gold live on different scales; each gets its own axis
    drawn = 0
    for index, (label, run_dir) in enumerate(runs.items()):
        rows = [r for r in read_metrics(run_dir) if GOLD in r and PROXY in r and SQRT_KL in r]
        if not rows:
            logger.warning("plot_gold_vs_proxy: %s has no %s/%s rows; skipped", run_dir, GOLD, PROXY)
            continue
        x = np.array([r[SQRT_KL] for r in rows], dtype=float)
        color = f"C{index}"
        gold_ax.plot(x, [r[GOLD] for r in rows], color=color, marker="o", markersize=3, label=f"{label}: gold (right axis)")
        ax.plot(x, [r[PROXY] for r in rows], color=color, linestyle="--", marker="x", markersize=3, label=f"{label}: proxy (left axis)")
        flagged = [(r[SQRT_KL], r[GOLD]) for r in rows if r.get(ALARM)]
        if flagged:
            fx, fy = zip(*flagged)
            gold_ax.scatter(fx, fy, color="tab:red", marker="X", s=60, zorder=3, label=f"{label}: hacking alarm")
        drawn += 1
    if not drawn:
        raise ValueError(f"plot_gold_vs_proxy: none of {list(runs.values())} logged {GOLD} and {PROXY}")
    ax.set_xlabel("sqrt(KL to the initial policy)")
    ax.set_ylabel("proxy reward (dashed)")
    gold_ax.set_ylabel("gold reward (solid)")
    ax.set_title(title or "gold vs proxy reward")
    ax.grid(True, alpha=0.3)
    handles = ax.get_legend_handles_labels()
    gold_handles = gold_ax.get_legend_handles_labels()
    ax.legend(handles[0] + gold_handles[0], handles[1] + gold_handles[1], fontsize=8, loc="best")
    fig.tight_layout()
    return save_png(fig, path)
