"""On-policy distillation vs SFT on teacher samples: a GRPO-trained tiny teacher into a student with < 1/4 of its parameters.

    python benchmarks/distill_arithmetic.py --teacher runs/demo/final [--seeds 0] [--steps 200] [--out runs/distill_arithmetic]

The teacher is the demo's model after SFT + GRPO (rewardlab demo: hidden 128, 4 layers, 0.87 M parameters).
The student (hidden 64, 3 layers, 0.17 M) gets the demo's SFT cold start on the same sloppy demonstrations,
then, from that same start and with the same steps, batch and learning rate:
    opd       on-policy distillation: the student samples, per-token advantage -(logp_S - logp_T)
    sft       SFT on the teacher's samples (sequence-level distillation): the teacher samples, the student
              imitates; per step one generation by the teacher instead of one by the student
Held-out greedy accuracy on eval seed 7 (500 problems) for teacher, student start and both students.
Writes <out>/seed<N>/rows.json and prints the table.
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
from rewardlab.demo import DEMO_SFT, DEMO_TASK
from rewardlab.monitor import format_table

STUDENT = {"hidden_size": 64, "intermediate_size": 192, "num_hidden_layers": 3, "num_attention_heads": 4, "num_key_value_heads": 4}
COMMON = {"task_options": DEMO_TASK, "torch_threads": 1, "tensorboard": False, "eval_n": 500, "eval_seed": 7}


def run_seed(seed: int, args: argparse.Namespace) -> list[dict]:
    out = Path(args.out) / f"seed{seed}"
    start = out / "student_sft" / "final"
    sft = {**DEMO_SFT, **COMMON, "model_config": STUDENT, "max_steps": args.sft_steps, "output_dir": str(out),
           "run_name": "student_sft", "seed": seed}
    run_stage(out / "student_sft", {"method": "sft", **sft}, train=lambda: rewardlab.train("sft", sft), load=lambda: None)
    rows = []
    for name, loss_type in (("on-policy distillation", "opd"), ("SFT on teacher samples", "sft")):
        summary = rewardlab.train("distill", {**COMMON, "teacher": args.teacher, "model": str(start), "loss_type": loss_type,
                                              "off_policy_source": "teacher", "max_steps": args.steps, "batch_size": 64,
                                              "learning_rate": args.lr, "max_completion_length": 6, "eval_steps": 50,
                                              "output_dir": str(out), "run_name": loss_type, "seed": seed})
        rows.append({"method": name, "seed": seed, "teacher": summary["teacher_accuracy"], "student_start": summary["eval_accuracy_before"],
                     "after": summary["eval_accuracy"], "share_of_teacher": summary["eval_accuracy"] / summary["teacher_accuracy"],
                     "train_time_s": summary["train_time_s"], "student_parameters": summary["student_parameters"],
                     "teacher_parameters": summary["teacher_parameters"]})
    (out / "rows.json").write_text(json.dumps(rows, indent=2))
    return rows


def mean_spread(values: list[float]) -> str:
    return f"{statistics.mean(values):.3f}" + (f" ± {statistics.stdev(values):.3f}" if len(values) > 1 else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--teacher", required=True, help="the GRPO-trained teacher (e.g. runs/demo/final)")
    parser.add_argument("--seeds", type=int, nargs="*", default=[0])
    parser.add_argument("--sft-steps", type=int, default=DEMO_SFT["max_steps"])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--out", default="runs/distill_arithmetic")
    parser.add_argument("--merge", nargs="*", default=[], help="rows.json files of other seeds to add to the table")
    args = parser.parse_args()
    rows = [row for seed in args.seeds for row in run_seed(seed, args)]
    for path in args.merge:
        rows += json.loads(Path(path).read_text())
    lines = []
    for method in dict.fromkeys(r["method"] for r in rows):
        mine = [r for r in rows if r["method"] == method]
        keys = ("teacher", "student_start", "after", "share_of_teacher", "train_time_s")
        lines.append([method, len(mine), *(mean_spread([r[key] for r in mine]) for key in keys)])
    print(format_table(lines, ["method", "seeds", "teacher", "student start", "after", "after / teacher", "train time s"]))


if __name__ == "__main__":
    main()
