"""Watching a run: metrics/samples logging (JSON lines + TensorBoard), PNG plots, progress and tables."""

from rewardlab.monitor.plots import PLOT_GROUPS, plot_run
from rewardlab.monitor.progress import format_table, progress
from rewardlab.monitor.runlog import RunLogger, read_metrics

__all__ = ["PLOT_GROUPS", "RunLogger", "format_table", "plot_run", "progress", "read_metrics"]
