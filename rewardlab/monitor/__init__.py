"""Watching a run: metrics/samples logging (JSON lines + TensorBoard), PNG plots, progress and tables, and a
reward-hacking monitor (proxy vs gold reward against sqrt KL)."""

from rewardlab.monitor.diversity import answer_entropy, distinct_correct, diversity_metrics, pass_at_k
from rewardlab.monitor.hacking import (
    HackingMonitor,
    alarm_steps,
    plot_gold_vs_proxy,
    reward_length_correlation,
)
from rewardlab.monitor.plots import PLOT_GROUPS, plot_run
from rewardlab.monitor.progress import format_table, progress
from rewardlab.monitor.runlog import RunLogger, read_metrics

__all__ = [
    "PLOT_GROUPS",
    "HackingMonitor",
    "RunLogger",
    "alarm_steps",
    "answer_entropy",
    "distinct_correct",
    "diversity_metrics",
    "format_table",
    "pass_at_k",
    "plot_gold_vs_proxy",
    "plot_run",
    "progress",
    "read_metrics",
    "reward_length_correlation",
]
