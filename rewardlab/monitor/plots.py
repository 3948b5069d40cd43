"""PNG curves of a run, one file per metric group, drawn from metrics.jsonl.

Plots are drawn with matplotlib's object API on the Agg canvas, so they work on headless machines and
never change the backend of an interactive session (e.g. a notebook) that calls `plot_run`.
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from rewardlab.monitor.runlog import read_metrics

logger = logging.getLogger(__name__)

# Output file -> key prefixes. A prefix matches a key's start or the part after any "/" in it
# ("kl" matches "kl", "policy/kl_mean"); the first group that matches a key gets it.
PLOT_GROUPS: dict[str, list[str]] = {
    "hacking.png": ["hacking/"],
    "reward.png": ["reward"],
    "accuracy.png": ["eval/accuracy", "accuracy"],
    "kl.png": ["kl"],
    "length.png": ["completion_length", "completions/", "length"],
    "loss.png": ["loss", "policy_loss"],
    "value.png": ["value_loss", "explained_variance", "values/"],
    "entropy.png": ["entropy"],
    "clip.png": ["clip"],
}

# Series with at least this many points get a moving-average line over the faded raw curve.
SMOOTH_MIN_POINTS = 20


def _matches(key: str, prefix: str) -> bool:
    parts = key.split("/")
    return any("/".join(parts[i:]).startswith(prefix) for i in range(len(parts)))


def _group_for(key: str, groups: Mapping[str, Sequence[str]]) -> str | None:
    for filename, prefixes in groups.items():
        if any(_matches(key, prefix) for prefix in prefixes):
            return filename
    return None


def _series(rows: list[dict], key: str) -> tuple[np.ndarray, np.ndarray]:
    """(steps, values) where `key` was logged with a finite number, sorted by step."""
    points = []
    for row in rows:
        value, step = row.get(key), row.get("step")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not isinstance(step, (int, float)):
            continue
        if math.isfinite(value):
            points.append((step, float(value)))
    points.sort(key=lambda p: p[0])
    steps = np.array([p[0] for p in points], dtype=float)
    values = np.array([p[1] for p in points], dtype=float)
    return steps, values


def moving_average(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing mean over `window` points; the first points average what exists so far."""
    sums = np.cumsum(np.insert(values, 0, 0.0))
    ends = np.arange(1, len(values) + 1)
    starts = np.maximum(ends - window, 0)
    return (sums[ends] - sums[starts]) / (ends - starts)


def _safe_filename(key: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", key).strip("_") + ".png"


def plot_run(
    run_dir: str | os.PathLike,
    keys: Sequence[str] | None = None,
    mark_steps: Sequence[tuple[int, str]] | None = None,
    groups: Mapping[str, Sequence[str]] | None = None,
) -> list[Path]:
    """Draw run_dir/metrics.jsonl into run_dir/plots/<group>.png and return the files written.

    Args:
        run_dir: a run directory written by RunLogger.
        keys: plot only these metric keys. A key that no group claims gets a PNG of its own.
            By default every key that some group claims is plotted.
        mark_steps: (step, label) pairs drawn as labelled vertical lines on every plot, e.g. where a
            reward-hacking monitor raised an alarm.
        groups: output file -> key prefixes; defaults to PLOT_GROUPS. With {} and `keys`, each key gets
            <key>.png of its own (what classic runs write).

    Groups without a finite value are skipped. The x axis is the step; NaN values are left out.
    """
    from matplotlib.figure import Figure

    run_dir = Path(run_dir)
    groups = dict(PLOT_GROUPS if groups is None else groups)
    rows = read_metrics(run_dir)
    logged = list(dict.fromkeys(k for row in rows for k in row if k != "step"))

    members: dict[str, list[str]] = {}
    for key in logged if keys is None else keys:
        if keys is not None and key not in logged:
            logger.warning("plot_run: %r was never logged in %s; skipped", key, run_dir / "metrics.jsonl")
            continue
        filename = _group_for(key, groups)
        if filename is None:
            if keys is None:
                continue
            filename = _safe_filename(key)
        members.setdefault(filename, []).append(key)

    out_dir = run_dir / "plots"
    written: list[Path] = []
    for filename, group_keys in members.items():
        series = {key: _series(rows, key) for key in group_keys}
        series = {key: sv for key, sv in series.items() if len(sv[0])}
        if not series:
            continue
        title = filename.removesuffix(".png")
        fig = Figure(figsize=(8, 4.5), dpi=100)
        ax = fig.add_subplot()
        for key, (steps, values) in series.items():
            if len(values) >= SMOOTH_MIN_POINTS:
                window = max(5, len(values) // 20)
                (raw,) = ax.plot(steps, values, alpha=0.3, linewidth=1)
                ax.plot(steps, moving_average(values, window), color=raw.get_color(), linewidth=2,
                        label=f"{key} (moving avg of {window})")
            else:
                ax.plot(steps, values, marker="o" if len(values) < 3 else None, linewidth=1.5, label=key)
        for step, label in mark_steps or ():
            ax.axvline(step, color="tab:red", linestyle="--", linewidth=1)
            ax.text(step, 0.98, f" {label}", transform=ax.get_xaxis_transform(), rotation=90,
                    va="top", ha="right", fontsize=8, color="tab:red")
        ax.set_title(f"{title} — {run_dir.name}")
        ax.set_xlabel("step")
        ax.set_ylabel(title)
        ax.grid(True, alpha=0.3)
        if len(series) <= 12:
            ax.legend(fontsize=8, loc="best")
        fig.tight_layout()

        written.append(save_png(fig, out_dir / filename))
    return written


def save_png(fig, path: str | os.PathLike) -> Path:
    """Write a matplotlib Figure to `path` as PNG, creating folders; written then renamed, so a viewer
    never sees half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fig.savefig(tmp, format="png")
    os.replace(tmp, path)
    return path
