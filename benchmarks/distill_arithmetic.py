"""On-policy distillation vs SFT on teacher samples: a GRPO-trained tiny teacher into a student with < 1/4 of its parameters.

    python benchmarks/distill_arithmetic.py [--seeds 0 1 2 3 4] [--teacher-seed 0] [--steps 200] [--out runs/distill_arithmetic]

The teacher is the demo's model after SFT + GRPO (`rewardlab demo --seed T`: hidden 128, 4 layers, 0.87 M
parameters), trained here as a stage (or given with --teacher DIR). The student (hidden 64, 3 layers, 0.17 M)
gets the demo's SFT cold start on the same sloppy demonstrations, one per seed; then, from that start and with
the same steps, batch and sequences per step:
    opd       on-policy distillation: the student samples, per-token advantage -(logp_S - logp_T)
    sft       SFT on the teacher's samples (sequence-level distillation): the teacher samples, the student
              imitates; per step one generation by the teacher instead of one by the student

Each method's learning rate is chosen on the tune split: one run per rate in --lrs (student start and run of
--tune-seed), evaluated on 500 distinct tune-split problems; the rate with the best tune accuracy is then run on
every seed and reported on 500 distinct test-split problems (eval seed 7). Every training run is a stage
(stages.py), so a rerun retrains nothing already trained with the same arguments.

Writes <out>/seed<N>/rows.json per seed and benchmarks/results/distill_arithmetic.{md,json}: the tune sweep,
the test table (mean ± sd over seeds), and opd minus sft and each method minus the student start, paired by seed.
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
from rewardlab.config import config_to_dict
from rewardlab.demo import DEMO_SFT, DEMO_TASK, demo_configs
from rewardlab.monitor import format_table
from rewardlab.trainers import train_grpo, train_sft

STUDENT = {"hidden_size": 64, "intermediate_size": 192, "num_hidden_layers": 3, "num_attention_heads": 4, "num_key_value_heads": 4}
COMMON = {"task_options": DEMO_TASK, "torch_threads": 1, "tensorboard": False, "eval_n": 500, "eval_seed": 7}
METHODS = {"opd": "on-policy distillation", "sft": "SFT on teacher samples"}
RESULTS = Path(__file__).resolve().parent / "results" / "distill_arithmetic.md"


def read_summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


def teacher_model(args: argparse.Namespace) -> str:
    """The teacher's final/: --teacher as given, or the demo (SFT + GRPO) of --teacher-seed trained as two stages."""
    if args.teacher:
        return args.teacher
    out = Path(args.out) / f"teacher{args.teacher_seed}"
    sft_cfg, grpo_cfg = demo_configs(str(out), args.teacher_seed, run_name="teacher", torch_threads=1, tensorboard=False)
    sft_cfg.torch_threads, sft_cfg.tensorboard = 1, False
    run_stage(sft_cfg.run_dir, config_to_dict(sft_cfg), train=partial(train_sft, sft_cfg), load=lambda: None)
    run_stage(grpo_cfg.run_dir, config_to_dict(grpo_cfg), train=partial(train_grpo, grpo_cfg), load=lambda: None)
    return str(grpo_cfg.run_dir / "final")


def student_start(seed: int, args: argparse.Namespace) -> Path:
    out = Path(args.out) / f"seed{seed}"
    sft = {**DEMO_SFT, **COMMON, "model_config": STUDENT, "max_steps": args.sft_steps, "output_dir": str(out),
           "run_name": "student_sft", "seed": seed}
    run_stage(out / "student_sft", {"method": "sft", **sft}, train=partial(rewardlab.train, "sft", sft), load=lambda: None)
    return out / "student_sft" / "final"


def distill(seed: int, loss_type: str, lr: float, split: str, teacher: str, args: argparse.Namespace) -> dict:
    """One distillation run (a stage) from the student start of `seed`; its summary plus what the row needs."""
    out = Path(args.out) / f"seed{seed}"
    name = f"{loss_type}_lr{lr:g}_{split}"
    cfg = {**COMMON, "teacher": teacher, "model": str(student_start(seed, args)), "loss_type": loss_type,
           "off_policy_source": "teacher", "max_steps": args.steps, "batch_size": 64, "learning_rate": lr,
           "max_completion_length": 6, "eval_steps": 50, "eval_split": split, "output_dir": str(out), "run_name": name,
           "seed": seed}
    summary = run_stage(out / name, {"method": "distill", **cfg}, train=partial(rewardlab.train, "distill", cfg),
                        load=partial(read_summary, out / name))
    return {"method": loss_type, "seed": seed, "lr": lr, "split": split, "teacher": summary["teacher_accuracy"],
            "student_start": summary["eval_accuracy_before"], "after": summary["eval_accuracy"],
            "share_of_teacher": summary["eval_accuracy"] / max(summary["teacher_accuracy"], 1e-9),
            "train_time_s": summary["train_time_s"], "student_parameters": summary["student_parameters"],
            "teacher_parameters": summary["teacher_parameters"]}


def report(tune: list[dict], rows: list[dict], chosen: dict, command: str, write: bool = True) -> str:
    seeds = sorted({r["seed"] for r in rows})
    by = {(r["method"], r["seed"]): r for r in rows}
    lines = ["# On-policy distillation vs SFT on teacher samples (arithmetic)", "",
             f"Generated by `{command}`. Teacher: the demo's model (SFT + GRPO). Student: hidden 64, 3 layers, the demo's "
             "SFT cold start per seed. Each method's learning rate chosen on the tune split (500 distinct tune problems), "
             "then reported on 500 distinct test-split problems of eval seed 7 over seeds "
             f"{', '.join(map(str, seeds))}. Spread: sample sd over seeds.", "",
             "Tune sweep (tune-split accuracy after the run):", "",
             format_table([{"method": r["method"], "lr": f"{r['lr']:g}", "seed": r["seed"], "tune accuracy": f"{r['after']:.3f}",
                            "chosen": "yes" if chosen[r["method"]] == r["lr"] else ""} for r in tune]), "",
             "Test split:", ""]
    table = []
    for method in chosen:
        mine = [by[(method, s)] for s in seeds]
        cell = {key: "{:.3f} ± {:.3f}".format(*mean_sd([r[key] for r in mine]))
                for key in ("teacher", "student_start", "after", "share_of_teacher")}
        table.append({"method": METHODS[method], "lr": f"{chosen[method]:g}", **cell,
                      "per seed": " / ".join(f"{r['after']:.3f}" for r in mine),
                      "train time s (mean)": f"{mean_sd([r['train_time_s'] for r in mine])[0]:.0f}"})
    lines += [format_table(table), "", "Paired by seed (mean difference in accuracy [95% t interval], exact sign-flip p):", ""]
    comparisons = {}
    pairs = [("opd", "sft")] if len(chosen) > 1 else []
    for a, b in pairs:
        comparisons[f"{a}-{b}"] = d = paired([by[(a, s)]["after"] for s in seeds], [by[(b, s)]["after"] for s in seeds])
        lines.append(f"- {METHODS[a]} minus {METHODS[b]}: {describe(d)}")
    for a in chosen:
        comparisons[f"{a}-start"] = d = paired([by[(a, s)]["after"] for s in seeds], [by[(a, s)]["student_start"] for s in seeds])
        lines.append(f"- {METHODS[a]} minus the student start: {describe(d)}")
    lines.append("")
    if write:  # the markdown is the caller's
        RESULTS.with_suffix(".json").write_text(json.dumps({"command": command, "chosen_lr": chosen, "tune": tune, "rows": rows,
                                                         "comparisons": comparisons}, indent=2))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--teacher", default="", help="a trained teacher's final/ (default: train the demo of --teacher-seed)")
    parser.add_argument("--teacher-seed", type=int, default=0)
    parser.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2, 3, 4])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--lrs", type=float, nargs="+", default=[1e-4, 3e-4, 1e-3], help="learning rates tried on the tune split")
    parser.add_argument("--tune-seed", type=int, default=0)
    parser.add_argument("--sft-steps", type=int, default=DEMO_SFT["max_steps"])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--out", default="runs/distill_arithmetic")
    parser.add_argument("--no-results", action="store_true", help="print only; leave benchmarks/results/ alone")
    args = parser.parse_args()
    teacher = teacher_model(args)
    tune = [distill(args.tune_seed, m, lr, "tune", teacher, args) for m in args.methods for lr in args.lrs]
    chosen = {m: max((r for r in tune if r["method"] == m), key=lambda r: r["after"])["lr"] for m in args.methods}
    rows = []
    for seed in args.seeds:
        mine = [distill(seed, m, chosen[m], "test", teacher, args) for m in args.methods]
        (Path(args.out) / f"seed{seed}" / "rows.json").write_text(json.dumps(mine, indent=2))
        rows += mine
    command = " ".join(["python", "benchmarks/distill_arithmetic.py", *sys.argv[1:]])
    text = report(tune, rows, chosen, command, write=not args.no_results)
    if not args.no_results:
        RESULTS.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
