"""SDPO, RLSD and SRPO vs GRPO on the demo's arithmetic task: same SFT start, same budget, several seeds.

    python benchmarks/self_distill_arithmetic.py --seeds 0 [--steps 60] [--sft runs/demo/sft/final] [--out runs/self_distill]

Each seed starts every method from the same SFT cold start (the demo's, that seed: pass --sft with a
"{seed}" placeholder, or let the script train it). All four use the demo's GRPO settings (256 completions
per step in groups of 8, learning rate 3e-4, 6 new tokens) and the same steps; the three hybrids add a
self-teacher (config.py presets): SDPO and SRPO re-prompt an EMA of the policy with a successful
sibling; RLSD shows it the reference answer. Held-out greedy accuracy (eval seed 7, 500 problems) is
measured every --eval-steps. Writes <out>/seed<N>/rows.json and prints accuracy against steps.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import json
import statistics
from pathlib import Path

from stages import run_stage  # benchmarks/ is on sys.path when a script there runs

import rewardlab
from rewardlab.demo import DEMO_GRPO, DEMO_SFT
from rewardlab.monitor import format_table, read_metrics

METHODS = ("grpo", "sdpo", "rlsd", "srpo")


def run_seed(seed: int, args: argparse.Namespace) -> list[dict]:
    out = Path(args.out) / f"seed{seed}"
    start = Path(args.sft.format(seed=seed)) if args.sft else out / "sft" / "final"
    if not args.sft or not start.exists():  # an --sft given is used as it is; the script's own is a stage (stages.py)
        sft = {**DEMO_SFT, "output_dir": str(out), "run_name": "sft", "seed": seed, "torch_threads": 1, "tensorboard": False}
        run_stage(out / "sft", {"method": "sft", **sft}, train=lambda: rewardlab.train("sft", sft), load=lambda: None)
        start = out / "sft" / "final"
    rows = []
    for method in args.methods:
        settings = {k: v for k, v in DEMO_GRPO.items() if k not in ("save_steps", "eval_steps", "max_steps")}
        summary = rewardlab.train(method, {**settings, "model": str(start), "max_steps": args.steps, "eval_steps": args.eval_steps,
                                           "eval_n": 500, "eval_seed": 7, "output_dir": str(out), "run_name": method, "seed": seed,
                                           "torch_threads": 1, "tensorboard": False})
        curve = {int(r["step"]): r["eval/accuracy"] for r in read_metrics(out / method) if "eval/accuracy" in r}
        rows.append({"method": method, "seed": seed, "curve": curve, "train_time_s": summary["train_time_s"]})
    (out / "rows.json").write_text(json.dumps(rows, indent=2))
    return rows


def collect(out: Path, methods: list[str]) -> list[dict]:
    """Rows from every run directory under out/seed*/<method>/, read from metrics.jsonl (a run still going counts
    with the evaluations it has; its time is left out)."""
    rows = []
    for seed_dir in sorted(out.glob("seed*")):
        for method in methods:
            if not (seed_dir / method / "metrics.jsonl").is_file():
                continue
            curve = {int(r["step"]): r["eval/accuracy"] for r in read_metrics(seed_dir / method) if "eval/accuracy" in r}
            summary = seed_dir / method / "summary.json"
            time_s = json.loads(summary.read_text())["train_time_s"] if summary.is_file() else float("nan")
            rows.append({"method": method, "seed": int(seed_dir.name[4:]), "curve": curve, "train_time_s": time_s})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2])
    parser.add_argument("--methods", nargs="+", default=list(METHODS))
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--eval-steps", type=int, default=20)
    parser.add_argument("--sft", default="", help='SFT start, may hold "{seed}" (default: train the demo SFT per seed)')
    parser.add_argument("--out", default="runs/self_distill")
    parser.add_argument("--merge", nargs="*", default=[], help="rows.json files of other seeds to add to the table")
    parser.add_argument("--collect", action="store_true", help="only build the table from the runs under --out (finished or not)")
    args = parser.parse_args()
    rows = collect(Path(args.out), args.methods) if args.collect else [row for seed in args.seeds for row in run_seed(seed, args)]
    for path in args.merge:
        rows += json.loads(Path(path).read_text())
    rows = [{**r, "curve": {int(k): v for k, v in r["curve"].items()}} for r in rows]
    steps = sorted({s for r in rows for s in r["curve"]})
    lines = []
    for method in dict.fromkeys(r["method"] for r in rows):
        mine = [r for r in rows if r["method"] == method]
        cells = [method, len(mine)]
        for step in steps:
            values = [r["curve"][step] for r in mine if step in r["curve"]]
            spread = f" ± {statistics.stdev(values):.3f}" if len(values) > 1 else ""
            cells.append(f"{statistics.mean(values):.3f}{spread}" if values else "-")
        times = [r["train_time_s"] for r in mine if r["train_time_s"] == r["train_time_s"]]  # finished runs
        cells.append(f"{statistics.mean(times):.0f}" if times else "-")
        lines.append(cells)
    print(format_table(lines, ["method", "seeds", *[f"step {s}" for s in steps], "train time s"]))


if __name__ == "__main__":
    main()
