"""Outcome rewards, process rewards, rejection sampling and REOPOLD on the `chain` task, at one generation budget.

    python benchmarks/process_rewards.py [--seeds 0 1 2] [--budget 12800] [--out runs/process_rewards]

The `chain` task (running sums, one per line; rewardlab/tasks/chain.py) has a step verifier, so a process
reward model (PRM) can be trained and checked step by step. Per seed:

    start     SFT cold start on the sloppy demonstrations (half of them slip once), the tiny model
    prm       a PRM from the start's weights, trained on the start's own samples labelled by the step verifier;
              its step accuracy is measured on samples of the test split's prompts
    grpo      GRPO with the outcome reward (the last line against the answer)
    grpo_prm  GRPO with the outcome reward plus the PRM's reward (min over the steps)
    grpo_prm_only  GRPO with the PRM's reward alone (a learned reward the policy can exploit)
    rs        rejection-sampling fine-tuning: rounds of 8 samples per prompt, the correct ones kept, SFT
    opd       on-policy distillation of the seed's grpo model into a smaller student (hidden 64, 3 layers)
    reopold   REOPOLD, the same student, teacher and steps
    sdpo      SDPO's self-teacher (a successful sibling), sdpo_mix 0.5, from a start cold-started with the simulated
              user's second turns (FOLLOWUP_RATE of its demonstrations)
    sdpo_followup  the follow-up self-teacher (the policy shown its own chain and the user's "no, line K is wrong"),
              the same start and settings

Every method draws the same number of completions (--budget): GRPO steps x batch, RS rounds x prompts x 8,
distillation steps x batch. Each method's learning rate is chosen on the tune split (--tune-seed, --lrs), then
each is reported on the test split (every one of its distinct problems, up to 500, eval seed 7) over --seeds.
Every training run is a stage (stages.py): a rerun retrains nothing already trained with the same arguments.

Writes benchmarks/results/process_rewards.{md,json}.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import json
import sys
from functools import partial
from pathlib import Path

from stages import run_stage  # benchmarks/ is on sys.path when a script there runs
from stats import describe, mean_sd, paired

import rewardlab
from rewardlab.monitor import format_table

STUDENT = {"hidden_size": 64, "intermediate_size": 192, "num_hidden_layers": 3, "num_attention_heads": 4, "num_key_value_heads": 4}
COMMON = {"task": "chain", "torch_threads": 1, "tensorboard": False, "eval_n": 500, "eval_seed": 7}
GROUP, BATCH, MAX_NEW = 8, 128, 16
FOLLOWUP_RATE = 0.3  # the share of second turns (a slip, "no, line K is wrong", the right chain) in the sdpo rows' start
METHODS = {"grpo": "GRPO, outcome reward", "grpo_prm": "GRPO, outcome + PRM (min)", "grpo_prm_only": "GRPO, PRM (min) alone",
           "rs": "rejection-sampling fine-tuning",
           "opd": "on-policy distillation (student)", "reopold": "REOPOLD (student)",
           "sdpo": "SDPO, sibling teacher (mix 0.5)*", "sdpo_followup": "follow-up self-teacher (mix 0.5)*"}
RESULTS = Path(__file__).resolve().parent / "results" / "process_rewards.md"


def read_summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


def stage(out: Path, name: str, method: str, cfg: dict) -> dict:
    cfg = {**COMMON, **cfg, "output_dir": str(out), "run_name": name}
    return run_stage(out / name, {"method": method, **cfg}, train=partial(rewardlab.train, method, cfg),
                     load=partial(read_summary, out / name))


def start(seed: int, args, model_config: dict | None = None, name: str = "start", task_options: dict | None = None) -> Path:
    out = Path(args.out) / f"seed{seed}"
    cfg = {"max_steps": args.sft_steps, "batch_size": 64, "learning_rate": 1e-3, "warmup_steps": 50, "seed": seed}
    if model_config:
        cfg["model_config"] = model_config
    if task_options:
        cfg["task_options"] = task_options
    stage(out, name, "sft", cfg)
    return out / name / "final"


def prm(seed: int, args) -> tuple[Path, dict]:
    out, policy = Path(args.out) / f"seed{seed}", str(start(seed, args))
    summary = stage(out, "prm", "prm", {"model": policy, "policy_samples": policy, "max_steps": args.prm_steps,
                                        "learning_rate": 3e-3, "warmup_steps": 50, "seed": seed})
    return out / "prm" / "final", summary


def run(seed: int, method: str, lr: float, split: str, args) -> dict:
    out = Path(args.out) / f"seed{seed}"
    name = f"{method}_lr{lr:g}_{split}"
    steps = args.budget // BATCH
    common = {"learning_rate": lr, "seed": seed, "eval_split": split}
    if method in ("grpo", "grpo_prm", "grpo_prm_only"):
        cfg = {**common, "model": str(start(seed, args)), "max_steps": steps, "batch_size": BATCH, "num_generations": GROUP,
               "max_completion_length": MAX_NEW, "max_prompt_length": 32}
        if method != "grpo":  # the PRM's min step score, with the outcome reward (grpo_prm) or alone
            cfg.update(process_reward_model=str(prm(seed, args)[0]), prm_aggregation="min")
            if method == "grpo_prm":
                cfg["reward_funcs"] = ["rewardlab.tasks.chain:chain_reward"]
        summary = stage(out, name, "grpo", cfg)
        before = summary.get("eval_accuracy_before")
    elif method in ("sdpo", "sdpo_followup"):  # from a start whose demonstrations include the user's second turns
        cfg = {**common, "model": str(start(seed, args, name="start_followup", task_options={"followup_rate": FOLLOWUP_RATE})),
               "max_steps": steps, "batch_size": BATCH, "num_generations": GROUP, "max_completion_length": MAX_NEW,
               "max_prompt_length": 160, "sdpo_mix": 0.5}
        if method == "sdpo_followup":
            cfg["teacher_context"] = "followup"
        summary = stage(out, name, "sdpo", cfg)
        before = summary.get("eval_accuracy_before")
    elif method == "rs":
        rounds = 4
        cfg = {**common, "model": str(start(seed, args)), "num_rounds": rounds, "prompts_per_round": args.budget // (rounds * GROUP),
               "num_generations": GROUP, "max_steps": steps, "batch_size": 32, "max_new_tokens": MAX_NEW}
        summary = stage(out, name, "rs", cfg)
        before = summary["eval_accuracy_before"]
    else:
        teacher = run(seed, "grpo", args.teacher_lr, "test", args)["model_dir"]
        cfg = {**common, "model": str(start(seed, args, STUDENT, "student_start")), "teacher": teacher, "max_steps": steps,
               "batch_size": BATCH, "max_completion_length": MAX_NEW, "max_prompt_length": 32}
        summary = stage(out, name, "distill", {**cfg, "loss_type": method})
        before = summary["eval_accuracy_before"]
    return {"method": method, "seed": seed, "lr": lr, "split": split, "before": before, "after": summary["eval_accuracy"],
            "train_time_s": summary.get("train_time_s"), "completions": args.budget, "model_dir": str(out / name / "final"),
            **answer_shape(out / name / "eval_samples.jsonl")}


def answer_shape(path: Path) -> dict:
    """How the held-out answers look: the mean number of steps (lines) written, and the share of the most common
    completion (1.0: the same text for every problem, a sign of a hacked reward)."""
    rows = [json.loads(line) for line in open(path)]
    steps = [len([s for s in r["completion"].split("\n") if s.strip()]) for r in rows]
    texts = [r["completion"] for r in rows]
    top = max(texts.count(t) for t in set(texts)) if texts else 0
    return {"steps_written": sum(steps) / max(1, len(steps)), "top_completion_share": top / max(1, len(texts)),
            "top_completion": max(set(texts), key=texts.count) if texts else ""}


def report(tune, rows, chosen, prm_rows, command, args) -> str:
    seeds = sorted({r["seed"] for r in rows})
    by = {(r["method"], r["seed"]): r for r in rows}
    lines = ["# Outcome rewards, process rewards, rejection sampling and REOPOLD (chain task)", "",
             f"Generated by `{command}`. Task `chain` (running sums of 3 to 5 one-digit numbers, one per line). Start: the "
             "tiny model after an SFT cold start on demonstrations of which half slip once. Every method draws "
             f"{args.budget} completions. Learning rates chosen on the tune split (seed {args.tune_seed}), results on the "
             f"test split (all its distinct problems up to 500, eval seed 7), seeds {', '.join(map(str, seeds))}; spread: "
             "sample sd over seeds. opd and reopold distil the seed's GRPO (outcome) model into a smaller student "
             "(hidden 64, 3 layers), from the student's own SFT start. *: the two self-teacher rows start from another SFT "
             f"start, whose demonstrations include {FOLLOWUP_RATE:.0%} second turns (a chain with a slip, the simulated "
             "user's \"no, line K is wrong\", the right chain), with SDPO's preset and sdpo_mix 0.5.", "",
             "Process reward model: step accuracy against the step verifier, on the start model's samples of test-split "
             "prompts (P(right) > 0.5 counts as right):", ""]
    lines += [format_table([{"seed": r["seed"], **{k: f"{v:.3f}" for k, v in r["eval"].items() if k not in ("steps", "wrong_steps")},
                             "steps": int(r["eval"]["steps"]), "wrong steps": int(r["eval"]["wrong_steps"])} for r in prm_rows])
              if prm_rows else "(no PRM in this run)", ""]
    lines += ["Tune sweep (tune-split accuracy after the run):", "",
              format_table([{"method": r["method"], "lr": f"{r['lr']:g}", "tune accuracy": f"{r['after']:.3f}",
                             "chosen": "yes" if chosen[r["method"]] == r["lr"] else ""} for r in tune]), "", "Test split:", ""]
    table = []
    for method in chosen:
        mine = [by[(method, s)] for s in seeds]
        table.append({"method": METHODS[method], "lr": f"{chosen[method]:g}",
                      "before": "{:.3f} ± {:.3f}".format(*mean_sd([r["before"] for r in mine])),
                      "after": "{:.3f} ± {:.3f}".format(*mean_sd([r["after"] for r in mine])),
                      "per seed": " / ".join(f"{r['after']:.3f}" for r in mine),
                      "steps written": "{:.2f}".format(mean_sd([r["steps_written"] for r in mine])[0]),
                      "most common answer's share": " / ".join(f"{r['top_completion_share']:.2f}" for r in mine),
                      "train time s (mean)": f"{mean_sd([r['train_time_s'] for r in mine])[0]:.0f}"})
    lines += [format_table(table), "", "Steps written: mean lines per held-out answer (the problems need 2 to 4). Most "
              "common answer's share: of the 500 held-out answers, the share that are one and the same text, per seed.", "",
              "Paired by seed (mean difference in accuracy [95% t interval], exact sign-flip p):", ""]
    comparisons = {}
    for a, b in [("grpo_prm", "grpo"), ("grpo_prm_only", "grpo"), ("rs", "grpo"), ("reopold", "opd"), ("sdpo_followup", "sdpo"),
                 ("sdpo_followup", "grpo")]:
        if a in chosen and b in chosen and len(seeds) > 1:
            comparisons[f"{a}-{b}"] = d = paired([by[(a, s)]["after"] for s in seeds], [by[(b, s)]["after"] for s in seeds])
            lines.append(f"- {METHODS[a]} minus {METHODS[b]}: {describe(d)}")
    for a in chosen if len(seeds) > 1 else []:
        comparisons[f"{a}-start"] = d = paired([by[(a, s)]["after"] for s in seeds], [by[(a, s)]["before"] for s in seeds])
        lines.append(f"- {METHODS[a]} minus its start: {describe(d)}")
    lines.append("")
    RESULTS.with_suffix(".json").write_text(json.dumps({"command": command, "chosen_lr": chosen, "tune": tune, "rows": rows,
                                                        "prm": prm_rows, "comparisons": comparisons}, indent=2))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--lrs", type=float, nargs="+", default=[1e-4, 3e-4, 1e-3], help="learning rates tried on the tune split")
    parser.add_argument("--tune-seed", type=int, default=0)
    parser.add_argument("--teacher-lr", type=float, default=0.0, help="the GRPO teacher's rate (default: GRPO's tuned rate)")
    parser.add_argument("--budget", type=int, default=12800, help="completions drawn by every method")
    parser.add_argument("--sft-steps", type=int, default=1000)
    parser.add_argument("--prm-steps", type=int, default=1200)
    parser.add_argument("--out", default="runs/process_rewards")
    args = parser.parse_args()
    ordered = [m for m in METHODS if m in args.methods]
    tune = []
    chosen = {}
    for method in ordered:
        if method in ("opd", "reopold") and not args.teacher_lr:
            args.teacher_lr = chosen.get("grpo") or max(args.lrs)
        mine = [run(args.tune_seed, method, lr, "tune", args) for lr in args.lrs]
        tune += mine
        chosen[method] = max(mine, key=lambda r: r["after"])["lr"]
    rows = [run(seed, m, chosen[m], "test", args) for seed in args.seeds for m in ordered]
    prm_rows = [{"seed": s, **prm(s, args)[1]} for s in args.seeds] if {"grpo_prm", "grpo_prm_only"} & set(ordered) else []
    command = " ".join(["python", "benchmarks/process_rewards.py", *sys.argv[1:]])
    text = report(tune, rows, chosen, prm_rows, command, args)
    RESULTS.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
