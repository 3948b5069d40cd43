"""The follow-up self-teacher vs SDPO and GRPO on arithmetic with a simulated user.

    python benchmarks/followup_teacher.py [--seeds 0 1 2] [--steps 60] [--out runs/followup_teacher]

Each seed: the demo's SFT cold start on demonstrations of which a share (--followup-rate, 0.3) are a dialogue's
second turn: a wrong first answer, the simulated user's complaint with a hint ("no, too small" / "no, too
big"), then the right answer. From that start, with the demo's GRPO settings (256 completions per step in
groups of 8, lr 3e-4, 6 new tokens) and the same steps:

    grpo           the verifier's reward
    sdpo           SDPO's self-teacher: the policy's EMA shown a successful sibling (the preset)
    sdpo_followup  the follow-up self-teacher: the policy's EMA shown the sampled answer and the user's
                   complaint about it, scoring the sampled tokens as its revision (teacher_context=followup)
    *_mix          the same with sdpo_mix 0.5: half the GRPO loss on every row, half the distillation

Neither self-teacher is tuned here: both run with SDPO's preset (and sdpo_mix 0.5 in the *_mix rows). Greedy accuracy on 500 distinct test-split
problems (eval seed 7) every --eval-steps. Every run is a stage (stages.py). Writes
benchmarks/results/followup_teacher.{md,json}.
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
from rewardlab.demo import DEMO_GRPO, DEMO_SFT, DEMO_TASK
from rewardlab.monitor import format_table, read_metrics

METHODS = {"grpo": ("grpo", {}), "sdpo": ("sdpo", {}), "sdpo_followup": ("sdpo", {"teacher_context": "followup"}),
           "sdpo_mix": ("sdpo", {"sdpo_mix": 0.5}), "sdpo_followup_mix": ("sdpo", {"teacher_context": "followup", "sdpo_mix": 0.5})}
RESULTS = Path(__file__).resolve().parent / "results" / "followup_teacher.md"


def read_summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


def run_seed(seed: int, args: argparse.Namespace) -> list[dict]:
    out = Path(args.out) / f"seed{seed}"
    task = {**DEMO_TASK, "followup_rate": args.followup_rate}
    sft = {**DEMO_SFT, "task_options": task, "output_dir": str(out), "run_name": "sft", "seed": seed, "torch_threads": 1,
           "tensorboard": False}
    run_stage(out / "sft", {"method": "sft", **sft}, train=lambda: rewardlab.train("sft", sft), load=lambda: None)
    rows = []
    for name in args.methods:
        method, extra = METHODS[name]
        settings = {k: v for k, v in DEMO_GRPO.items() if k not in ("save_steps", "eval_steps", "max_steps")}
        cfg = {**settings, **extra, "task_options": task, "model": str(out / "sft" / "final"), "max_steps": args.steps,
               "eval_steps": args.eval_steps, "eval_n": 500, "eval_seed": 7, "output_dir": str(out), "run_name": name,
               "seed": seed, "torch_threads": 1, "tensorboard": False}
        summary = run_stage(out / name, {"method": method, **cfg}, train=partial(rewardlab.train, method, cfg),
                            load=partial(read_summary, out / name))
        metrics = read_metrics(out / name)
        curve = {int(r["step"]): r["eval/accuracy"] for r in metrics if "eval/accuracy" in r}
        distilled = [r["self_distill/rows"] for r in metrics if "self_distill/rows" in r]
        rows.append({"method": name, "seed": seed, "curve": curve, "train_time_s": summary["train_time_s"],
                     "distilled_rows": statistics.mean(distilled) if distilled else None})
    return rows


def report(rows: list[dict], command: str, args: argparse.Namespace) -> str:
    steps = sorted({s for r in rows for s in r["curve"]})
    by = {(r["method"], r["seed"]): r for r in rows}
    seeds = sorted({r["seed"] for r in rows})
    table = []
    for name in args.methods:
        mine = [by[(name, s)] for s in seeds]
        cells = {"method": name}
        for step in steps:
            cells[f"step {step}"] = "{:.3f} ± {:.3f}".format(*mean_sd([r["curve"][step] for r in mine]))
        cells[f"per seed at step {steps[-1]}"] = " / ".join(f"{r['curve'][steps[-1]]:.3f}" for r in mine)
        shares = [r["distilled_rows"] for r in mine if r["distilled_rows"] is not None]
        cells["rows with a teacher"] = f"{statistics.mean(shares):.2f}" if shares else "-"
        cells["train time s"] = f"{statistics.mean(r['train_time_s'] for r in mine):.0f}"
        table.append(cells)
    comparisons, lines = {}, []
    for a, b in [("sdpo_followup", "sdpo"), ("sdpo_followup", "grpo"), ("sdpo", "grpo"), ("sdpo_followup_mix", "sdpo_mix"),
                 ("sdpo_followup_mix", "grpo")]:
        if a in args.methods and b in args.methods and len(seeds) > 1:
            comparisons[f"{a}-{b}"] = d = paired([by[(a, s)]["curve"][steps[-1]] for s in seeds],
                                                 [by[(b, s)]["curve"][steps[-1]] for s in seeds])
            lines.append(f"- {a} minus {b} at step {steps[-1]}: {describe(d)}")
    RESULTS.with_suffix(".json").write_text(json.dumps({"command": command, "rows": rows, "comparisons": comparisons}, indent=2))
    return "\n".join([
        "# The follow-up self-teacher vs SDPO and GRPO (arithmetic with a simulated user)", "",
        f"Generated by `{command}`. Each seed: the demo's SFT cold start with {args.followup_rate:.0%} of its demonstrations "
        "a dialogue's second turn (wrong first answer, the user's \"no, too small\" / \"no, too big\", the right answer); "
        "then each method from it with the demo's GRPO settings. Both self-teachers use SDPO's preset (an EMA teacher, "
        "sdpo_mix 1: rows without a teacher get no loss; the *_mix rows 0.5: half GRPO on every row), none tuned. Greedy accuracy on 500 distinct test-split "
        f"problems (eval seed 7); seeds {', '.join(map(str, seeds))}; spread: sample sd over seeds. \"Rows with a "
        "teacher\": the mean share of completions distilled per step (sdpo: a successful sibling exists; followup: "
        "the user complained).", "",
        format_table(table), "", "Paired by seed (mean difference [95% t interval], exact sign-flip p):", "", *lines, ""])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--eval-steps", type=int, default=20)
    parser.add_argument("--followup-rate", type=float, default=0.3)
    parser.add_argument("--out", default="runs/followup_teacher")
    args = parser.parse_args()
    rows = [row for seed in args.seeds for row in run_seed(seed, args)]
    command = " ".join(["python", "benchmarks/followup_teacher.py", *sys.argv[1:]])
    text = report(rows, command, args)
    RESULTS.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
