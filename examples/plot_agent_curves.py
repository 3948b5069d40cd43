"""Learning curves of RL runs on a text environment, one line per training seed, into one PNG.

    python examples/plot_agent_curves.py runs/grpo_tictactoe_s0 runs/grpo_tictactoe_s1 runs/grpo_tictactoe_s2 \
        --metric rewards/env/win/mean --out docs/agents_tictactoe.png --title "tic-tac-toe: GRPO"

The left panel is a training metric (sampled episodes, smoothed over `--window` steps); the right one the
greedy held-out score at each evaluation: "eval/accuracy" (the environment's score) unless `--eval-metric`
names another logged evaluation metric, e.g. eval/env/regret for the bandits.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def read(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--metric", default="reward", help="training metric for the left panel")
    parser.add_argument("--eval-metric", default="eval/accuracy", help="evaluation metric for the right panel")
    parser.add_argument("--eval-label", default="", help="its axis label (default: held-out score, or the metric)")
    parser.add_argument("--window", type=int, default=5)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--title", default="")
    args = parser.parse_args()

    fig, (train_ax, eval_ax) = plt.subplots(1, 2, figsize=(10, 3.6))
    for run in args.runs:
        rows = read(run)
        steps = np.array([r["step"] for r in rows if args.metric in r])
        values = np.array([r[args.metric] for r in rows if args.metric in r], dtype=float)
        if len(values) >= args.window:
            kernel = np.ones(args.window) / args.window
            values, steps = np.convolve(values, kernel, mode="valid"), steps[args.window - 1 :]
        train_ax.plot(steps, values, label=run.name)
        evals = [(r["step"], r[args.eval_metric]) for r in rows if args.eval_metric in r]
        if evals:
            eval_ax.plot(*zip(*evals), marker="o", label=run.name)
    train_ax.set(xlabel="step", ylabel=args.metric, title=f"training ({args.window}-step mean)")
    default_label = "held-out score (greedy)" if args.eval_metric == "eval/accuracy" else args.eval_metric
    eval_ax.set(xlabel="step", ylabel=args.eval_label or default_label, title="held-out evaluation (greedy)")
    for ax in (train_ax, eval_ax):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if args.title:
        fig.suptitle(args.title)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(args.out)


if __name__ == "__main__":
    main()
