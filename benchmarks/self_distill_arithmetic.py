"""SDPO, RLSD and SRPO vs GRPO on the demo's arithmetic task: same SFT start, same budget, several seeds.

    python benchmarks/self_distill_arithmetic.py [--seeds 0 1 2 3 4] [--steps 60] [--sft runs/demo/sft/final] [--out runs/self_distill]

Each seed starts every method from the same SFT cold start (the demo's, that seed: pass --sft with a
"{seed}" placeholder, or let the script train it). All four use the demo's GRPO settings (256 completions
per step in groups of 8, learning rate 3e-4, 6 new tokens) and the same steps; the three hybrids add a
self-teacher (config.py presets): SDPO and SRPO re-prompt an EMA of the policy with a successful
sibling; RLSD shows it the reference answer. Held-out greedy accuracy (eval seed 7, 500 distinct
test-split problems) is measured every --eval-steps. Every run is a stage (stages.py): a rerun retrains
nothing already trained with the same arguments. Writes <out>/seed<N>/rows.json, and
benchmarks/results/self_distill_arithmetic.{md,json}: accuracy against steps and, at the last step, each
method minus GRPO paired by seed.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import json
import statistics
import sys
from functools import partial
from pathlib import Path

from stages import run_stage  # benchmarks/ is on sys.path when a script there runs
from stats import describe, mean_sd, paired

import rewardlab
from rewardlab.demo import DEMO_GRPO, DEMO_SFT
from rewardlab.monitor import format_table, read_metrics

METHODS = ("grpo", "sdpo", "rlsd", "srpo")
RESULTS = Path(__file__).resolve().parent / "results" / "self_distill_arithmetic.md"


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
        cfg = {**settings, "model": str(start), "max_steps": args.steps, "eval_steps": args.eval_steps, "eval_n": 500,
               "eval_seed": 7, "output_dir": str(out), "run_name": method, "seed": seed, "torch_threads": 1, "tensorboard": False}
        summary = run_stage(out / method, {"method": method, **cfg}, train=partial(rewardlab.train, method, cfg),
                            load=partial(read_summary, out / method))
        curve = {int(r["step"]): r["eval/accuracy"] for r in read_metrics(out / method) if "eval/accuracy" in r}
        rows.append({"method": method, "seed": seed, "curve": curve, "train_time_s": summary["train_time_s"]})
    (out / "rows.json").write_text(json.dumps(rows, indent=2))
    return rows


def read_summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


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
    parser.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2, 3, 4])
    parser.add_argument("--methods", nargs="+", default=list(METHODS))
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--eval-steps", type=int, default=20)
    parser.add_argument("--sft", default="", help='SFT start, may hold "{seed}" (default: train the demo SFT per seed)')
    parser.add_argument("--out", default="runs/self_distill")
    parser.add_argument("--merge", nargs="*", default=[], help="rows.json files of other seeds to add to the table")
    parser.add_argument("--collect", action="store_true", help="only build the table from the runs under --out (finished or not)")
    parser.add_argument("--no-results", action="store_true", help="print only; leave benchmarks/results/ alone")
    args = parser.parse_args()
    rows = collect(Path(args.out), args.methods) if args.collect else [row for seed in args.seeds for row in run_seed(seed, args)]
    for path in args.merge:
        rows += json.loads(Path(path).read_text())
    rows = [{**r, "curve": {int(k): v for k, v in r["curve"].items()}} for r in rows]
    command = " ".join(["python", "benchmarks/self_distill_arithmetic.py", *sys.argv[1:]])
    text = report(rows, command, write=not args.no_results)
    if not args.no_results:
        RESULTS.write_text(text)
    print(text)


def report(rows: list[dict], command: str, write: bool = True) -> str:
    """Accuracy against steps (mean ± sd over seeds) and, at the last step, each method minus the first listed,
    paired by seed; writes the JSON next to the markdown."""
    steps = sorted({s for r in rows for s in r["curve"]})
    methods = list(dict.fromkeys(r["method"] for r in rows))
    by = {(r["method"], r["seed"]): r for r in rows}
    lines = []
    for method in methods:
        mine = [r for r in rows if r["method"] == method]
        cells = [method, len(mine)]
        for step in steps:
            values = [r["curve"][step] for r in mine if step in r["curve"]]
            cells.append(f"{mean_sd(values)[0]:.3f} ± {mean_sd(values)[1]:.3f}" if values else "-")
        cells.append(" / ".join(f"{r['curve'].get(steps[-1], float('nan')):.3f}" for r in sorted(mine, key=lambda r: r["seed"])))
        times = [r["train_time_s"] for r in mine if r["train_time_s"] == r["train_time_s"]]  # finished runs
        cells.append(f"{statistics.mean(times):.0f}" if times else "-")
        lines.append(cells)
    last, base, comparisons, diff_lines = steps[-1], methods[0], {}, []
    for method in methods[1:]:
        seeds = sorted(s for (m, s) in by if m == method and (base, s) in by and last in by[(method, s)]["curve"]
                       and last in by[(base, s)]["curve"])
        if len(seeds) >= 2:
            d = paired([by[(method, s)]["curve"][last] for s in seeds], [by[(base, s)]["curve"][last] for s in seeds])
            comparisons[method] = d
            diff_lines.append(f"- {method} minus {base} at step {last} (seeds {', '.join(map(str, seeds))}): {describe(d)}")
    if write:  # the markdown is the caller's
        RESULTS.with_suffix(".json").write_text(json.dumps({"command": command, "rows": rows, "comparisons": comparisons}, indent=2))
    return "\n".join([
        "# SDPO, RLSD and SRPO vs GRPO on arithmetic", "",
        f"Generated by `{command}`. Each seed: the demo's SFT cold start, then every method from it with the demo's "
        "GRPO settings (256 completions per step in groups of 8, lr 3e-4, 6 new tokens); the self-distillation "
        "methods with their presets (none tuned here). Greedy accuracy on 500 distinct test-split problems (eval "
        "seed 7) during training. Spread: sample sd over seeds.", "",
        format_table(lines, ["method", "seeds", *[f"step {s}" for s in steps], f"per seed at step {last}", "train time s"]), "",
        "Paired by seed (mean difference [95% t interval], exact sign-flip p; \"no difference\" when the interval "
        "contains 0):", "", *diff_lines, ""])


if __name__ == "__main__":
    main()
