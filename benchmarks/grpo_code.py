"""GRPO on the code task with the tiny model: SFT cold start, then GRPO; hidden-test reward before and after.

    python benchmarks/grpo_code.py [--seeds 0 1 2] [--tune-seed 0] [--sft-steps 400] [--lrs 1e-5 3e-5 1e-4]
                                   [--rl-steps 90] [--checkpoint-every 30] [--out runs/grpo_code]

The code task (rewardlab/tasks/code.py, docs/code_task.md): a prompt shows an integer function f on five
inputs, the completion is a Python expression in x, and the reward is the fraction of the function's eight
hidden tests (other inputs, expected values kept out of the sandbox) that the expression passes, run in the
bubblewrap sandbox.

For each seed: an SFT cold start on the canonical expressions (the tiny model, a stage), then GRPO from
it (constant learning rate, checkpoints every --checkpoint-every steps). Choosing on the tune split: from
the SFT start of --tune-seed, one GRPO run per learning rate in --lrs; every checkpoint of every run is
measured on all tune-split functions (greedy decoding, mean fraction of hidden tests passed), and the
(learning rate, steps) with the best tune reward is chosen. The other seeds then run GRPO with that
learning rate and are stopped at that step (the same run length and checkpoint, so every seed gets the
same recipe). Only then is the test split touched: each seed's SFT model and its chosen GRPO checkpoint are
measured on all test-split functions (greedy). Reported: per seed and mean ± sd, the paired difference
(GRPO minus SFT) with a 95% t interval and the exact sign-flip p, the share of functions with every hidden
test passed, and the reward by function family.

The reward is computed by the task's reward function (rewardlab/tasks/code.py): every distinct program of a
batch runs once in the sandbox, through run_batch (2 workers), a program that does not parse scores 0 without
running, and results are remembered across steps.

Every training run is a stage (stages.py), so a rerun retrains nothing already trained with the same
arguments. Writes benchmarks/results/grpo_code.{md,json}.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import json
import platform
import statistics
import sys
import time
from functools import partial
from pathlib import Path

import torch
from stages import run_stage  # benchmarks/ is on sys.path when a script there runs
from stats import describe, mean_sd, paired

import rewardlab
from rewardlab.models import load_policy
from rewardlab.monitor import format_table
from rewardlab.rollout import HFEngine, SamplingParams
from rewardlab.tasks import make_task
from rewardlab.trainers.inputs import encode_prompt

TASK: dict = {}  # the task's defaults: 8 hidden tests, every family, no sloppy demonstrations
MAX_NEW_TOKENS = 14  # the longest canonical expression has 11 characters, then EOS
RESULTS = Path(__file__).resolve().parent / "results" / "grpo_code.md"
COMMON = {"task": "code", "task_options": TASK, "torch_threads": 1, "tensorboard": False}


def split_records(split: str) -> list[dict]:
    """Every function of the split, once (the eval set asks for the whole split)."""
    task = make_task("code", **TASK)
    return task.generate(len(task.split_problems(split)), seed=7, split=split)


@torch.no_grad()
def measure(model_dir: Path, split: str) -> dict:
    """Greedy completions for every function of the split, scored by the task's sandboxed reward."""
    records = split_records(split)
    reward = make_task("code", **TASK).reward_functions()[0]
    model, tok = load_policy(str(model_dir))
    model.eval()
    engine = HFEngine(model, tok)
    rollout = engine.generate([encode_prompt(r["prompt"], tok)[0] for r in records], 1,
                              SamplingParams(max_new_tokens=MAX_NEW_TOKENS, temperature=0.0))
    scores = reward(rollout.completions_text, [r["tests"] for r in records])
    by_family: dict[str, list[float]] = {}
    for r, s in zip(records, scores):
        by_family.setdefault(r["family"], []).append(s)
    return {
        "reward": statistics.fmean(scores),
        "solved": statistics.fmean(s == 1.0 for s in scores),
        "n_functions": len(records),
        "by_family": {f: statistics.fmean(v) for f, v in sorted(by_family.items())},
        "samples": [{"prompt": r["prompt"], "completion": c, "answer": r["answer"], "reward": s}
                    for r, c, s in zip(records, rollout.completions_text, scores)],
    }


def sft_stage(seed: int, args: argparse.Namespace) -> Path:
    out = Path(args.out) / f"seed{seed}"
    sft = {**COMMON, "output_dir": str(out), "run_name": "sft", "seed": seed, "max_steps": args.sft_steps,
           "learning_rate": 1e-3, "batch_size": 64, "warmup_steps": 50, "max_new_tokens": MAX_NEW_TOKENS,
           "eval_split": "tune", "eval_n": 10_000, "logging_steps": 100}
    run_stage(out / "sft", {"method": "sft", **sft}, train=partial(rewardlab.train, "sft", sft), load=lambda: None)
    return out / "sft" / "final"


def grpo_config(seed: int, lr: float, args: argparse.Namespace) -> dict:
    out = Path(args.out) / f"seed{seed}"
    return {**COMMON, "model": str(sft_stage(seed, args)), "output_dir": str(out), "run_name": f"grpo_lr{lr:g}",
            "seed": seed, "max_steps": args.rl_steps, "batch_size": args.prompts_per_step * args.group,
            "num_generations": args.group, "learning_rate": lr, "scale_rewards": args.scale_rewards, "lr_scheduler": "constant", "warmup_steps": 0,
            "max_completion_length": MAX_NEW_TOKENS, "temperature": 1.0, "beta": 0.0, "log_kl": False,
            "save_steps": args.checkpoint_every, "save_total_limit": 1000, "eval_split": "tune", "eval_n": 50,
            "logging_steps": 10}


def grpo_stage(seed: int, lr: float, args: argparse.Namespace) -> dict[int, Path]:
    """Train (or reuse) one GRPO run; its models by step: checkpoint-k for each k, final/ for the last."""
    cfg = grpo_config(seed, lr, args)
    run_dir = Path(cfg["output_dir"]) / cfg["run_name"]
    run_stage(run_dir, {"method": "grpo", **cfg}, train=partial(rewardlab.train, "grpo", cfg),
              load=lambda: None)
    models = {k: run_dir / f"checkpoint-{k}" for k in range(args.checkpoint_every, args.rl_steps, args.checkpoint_every)}
    models[args.rl_steps] = run_dir / "final"
    return models


def tune(args: argparse.Namespace, timings: dict) -> tuple[dict, list[dict]]:
    """Every checkpoint of every learning rate's run from the --tune-seed SFT start, on the tune split; the
    (lr, steps) with the best tune reward (ties: fewer steps)."""
    seed = args.tune_seed
    t0 = time.time()
    sft_dir = sft_stage(seed, args)
    timings[f"sft_seed{seed}_s"] = time.time() - t0
    rows = [{"seed": seed, "lr": None, "steps": 0, "tune_reward": measure(sft_dir, "tune")["reward"]}]
    for lr in args.lrs:
        t0 = time.time()
        models = grpo_stage(seed, lr, args)
        timings[f"grpo_seed{seed}_lr{lr:g}_s"] = time.time() - t0
        for steps, path in sorted(models.items()):
            rows.append({"seed": seed, "lr": lr, "steps": steps, "tune_reward": measure(path, "tune")["reward"]})
    grid = [r for r in rows if r["lr"] is not None]
    best = max(grid, key=lambda r: (r["tune_reward"], -r["steps"]))
    return {"lr": best["lr"], "steps": best["steps"], "tune_reward": best["tune_reward"], "tune_seed": seed}, rows


def report(choice: dict, tune_rows: list[dict], test_rows: list[dict], args, command: str, timings: dict) -> str:
    seeds = [r["seed"] for r in test_rows]
    before = [r["sft"]["reward"] for r in test_rows]
    after = [r["grpo"]["reward"] for r in test_rows]
    solved_before = [r["sft"]["solved"] for r in test_rows]
    solved_after = [r["grpo"]["solved"] for r in test_rows]
    diff, diff_solved = paired(after, before), paired(solved_after, solved_before)
    sft_tune = next(r["tune_reward"] for r in tune_rows if r["steps"] == 0)
    n_test = test_rows[0]["sft"]["n_functions"]
    n_tune = len(split_records("tune"))
    fmt = lambda v: f"{v:.3f}"  # noqa: E731
    lines = [
        "# GRPO on the code task (tiny model)", "",
        f"Generated by `{command}` in {timings['total_s']:.0f} s (torch {torch.__version__}, {platform.machine()}, "
        f"1 torch thread, {os.cpu_count()} cores shared with other jobs; sandbox: bwrap via run_batch).", "",
        "Task: `code` with its defaults (5 shown examples, 8 hidden tests per function, every family, no sloppy "
        "demonstrations). Reward: the fraction of a function's hidden tests that the greedy completion passes, run "
        "in the sandbox. Model: the built-in tiny model (0.87 M parameters, character-level).", "",
        f"Settings. SFT: {args.sft_steps} steps, batch 64, learning rate 1e-3 (cosine, 50 warm-up). GRPO: "
        f"{args.prompts_per_step} prompts x {args.group} completions per step, advantage = reward minus the group mean "
        f"(scale_rewards {args.scale_rewards}), temperature 1, beta 0, constant "
        f"learning rate, max {MAX_NEW_TOKENS} new tokens; learning rates {', '.join(f'{x:g}' for x in args.lrs)} "
        f"and steps {', '.join(map(str, range(args.checkpoint_every, args.rl_steps + 1, args.checkpoint_every)))} "
        f"tried on the tune split ({n_tune} functions); test split: {n_test} functions.", "",
        f"## Choice on the tune split (seed {choice['tune_seed']}, greedy tune reward)", "",
        f"SFT start: {sft_tune:.3f}", "",
        "| learning rate | steps | tune reward |", "|---|---|---|",
    ]
    for g in tune_rows:
        if g["lr"] is not None:
            mark = " (chosen)" if (g["lr"], g["steps"]) == (choice["lr"], choice["steps"]) else ""
            lines.append(f"| {g['lr']:g} | {g['steps']} | {g['tune_reward']:.3f}{mark} |")
    m_b, s_b = mean_sd(before)
    m_a, s_a = mean_sd(after)
    ms_b, ss_b = mean_sd(solved_before)
    ms_a, ss_a = mean_sd(solved_after)
    lines += [
        "", f"## Test split: learning rate {choice['lr']:g}, {choice['steps']} GRPO steps", "",
        "| seed | reward after SFT | reward after GRPO | difference | all tests passed, SFT | all tests passed, GRPO |",
        "|---|---|---|---|---|---|",
    ]
    for r in test_rows:
        lines.append(f"| {r['seed']} | {fmt(r['sft']['reward'])} | {fmt(r['grpo']['reward'])} | "
                     f"{r['grpo']['reward'] - r['sft']['reward']:+.3f} | {fmt(r['sft']['solved'])} | {fmt(r['grpo']['solved'])} |")
    lines += [
        f"| mean ± sd | {m_b:.3f} ± {s_b:.3f} | {m_a:.3f} ± {s_a:.3f} | {diff['mean']:+.3f} | "
        f"{ms_b:.3f} ± {ss_b:.3f} | {ms_a:.3f} ± {ss_a:.3f} |", "",
        f"Paired by seed, GRPO minus SFT (mean [95% t interval], exact sign-flip p over {len(seeds)} seeds): "
        f"reward {describe(diff)}; all tests passed {describe(diff_solved)}.", "",
        "Test reward by family (mean over seeds):", "",
        "| family | SFT | GRPO |", "|---|---|---|",
    ]
    for family in test_rows[0]["sft"]["by_family"]:
        b = statistics.fmean(r["sft"]["by_family"][family] for r in test_rows)
        a = statistics.fmean(r["grpo"]["by_family"][family] for r in test_rows)
        lines.append(f"| {family} | {b:.3f} | {a:.3f} |")
    lines += ["", "Time per stage (s): " + ", ".join(f"{k} {v:.0f}" for k, v in timings.items()), ""]
    RESULTS.with_suffix(".json").write_text(json.dumps({
        "command": command, "seeds": seeds, "choice": choice, "tune_rows": tune_rows,
        "test": [{"seed": r["seed"], **{m: {k: v for k, v in r[m].items() if k != "samples"} for m in ("sft", "grpo")}}
                 for r in test_rows],
        "paired_reward": diff, "paired_solved": diff_solved, "timings_s": timings,
        "settings": {"task": TASK, "scale_rewards": args.scale_rewards, "sft_steps": args.sft_steps, "lrs": args.lrs, "rl_steps": args.rl_steps,
                     "checkpoint_every": args.checkpoint_every, "prompts_per_step": args.prompts_per_step,
                     "group": args.group, "max_new_tokens": MAX_NEW_TOKENS},
    }, indent=2))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--tune-seed", type=int, default=0, help="the seed whose runs choose lr and steps on the tune split")
    parser.add_argument("--sft-steps", type=int, default=400)
    parser.add_argument("--lrs", type=float, nargs="+", default=[1e-5, 3e-5, 1e-4])
    parser.add_argument("--rl-steps", type=int, default=90)
    parser.add_argument("--checkpoint-every", type=int, default=30)
    parser.add_argument("--prompts-per-step", type=int, default=16)
    parser.add_argument("--group", type=int, default=8)
    parser.add_argument("--scale-rewards", default="none", choices=["group", "batch", "none"],
                        help="GRPO advantage: reward minus the group mean, divided by the group std, the batch std or nothing")
    parser.add_argument("--out", default="runs/grpo_code")
    parser.add_argument("--tune-only", action="store_true", help="stop after the tune-split choice (no test split, no results file)")
    args = parser.parse_args()
    started = time.time()
    timings: dict[str, float] = {}
    choice, tune_rows = tune(args, timings)
    print(format_table([[f"{g['lr']:g}" if g["lr"] else "SFT", g["steps"], f"{g['tune_reward']:.3f}"] for g in tune_rows],
                       ["lr", "steps", f"tune reward (seed {args.tune_seed})"]))
    print(f"chosen: lr {choice['lr']:g}, {choice['steps']} steps (tune reward {choice['tune_reward']:.3f})")
    if args.tune_only:
        return
    test_rows = []
    for seed in args.seeds:
        t0 = time.time()
        chosen = grpo_stage(seed, choice["lr"], args)[choice["steps"]]
        row = {"seed": seed, "sft": measure(sft_stage(seed, args), "test"), "grpo": measure(chosen, "test")}
        (Path(args.out) / f"seed{seed}" / "test_samples.json").write_text(json.dumps(row, indent=1))
        test_rows.append(row)
        timings[f"seed{seed}_train_if_new_and_test_s"] = time.time() - t0
    timings["total_s"] = time.time() - started
    command = " ".join(["python", "benchmarks/grpo_code.py", *sys.argv[1:]])
    text = report(choice, tune_rows, test_rows, args, command, timings)
    RESULTS.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
