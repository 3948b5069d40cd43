"""FlowRL vs GRPO on countdown: same SFT start, same budget, several seeds; accuracy and diversity.

    python benchmarks/flowrl_countdown.py --seeds 0 [--sft-steps 800] [--rl-steps 150] [--out runs/flowrl_countdown]
    python benchmarks/flowrl_countdown.py --seeds --merge runs/flowrl_countdown/seed*/rows.json   # the table

For each seed: an SFT cold start on countdown demonstrations (a demonstrator choosing uniformly among all
correct answers, 30% of them replaced by a random expression), then GRPO and FlowRL from that model with
the same prompts per step, group size, learning rate and steps. Both use the group-normalised reward
(GRPO's advantage; FlowRL's r_hat) and one update per rollout. The SFT model and both RL models are
measured on the same held-out prompts (deduplicated, eval seed 7): greedy accuracy, and 16 samples per
prompt at temperature 1 for sampled accuracy, distinct correct answers, answer entropy and pass@k.

Writes <out>/seed<N>/rows.json per seed and, from all rows given, docs/beyond.md's table to stdout.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import json
import statistics
import time
from pathlib import Path

from stages import run_stage  # benchmarks/ is on sys.path when a script there runs

import rewardlab
from rewardlab.config import load_config
from rewardlab.models import load_policy
from rewardlab.monitor import format_table
from rewardlab.tasks.countdown import countdown_answer
from rewardlab.trainers.evaluate import evaluate_accuracy, evaluate_diversity
from rewardlab.trainers.inputs import eval_records, verifier

TASK = {"sloppy_rate": 0.3}
MAX_NEW_TOKENS = 10
COMMON = {"task": "countdown", "task_options": TASK, "torch_threads": 1, "tensorboard": False}


def measure(model_dir: Path, n_prompts: int, samples: int) -> dict:
    cfg = load_config("sft", None, {**COMMON, "eval_n": 4 * n_prompts, "eval_seed": 7})
    unique = list({r["prompt"]: r for r in eval_records(cfg)}.values())[:n_prompts]
    model, tok = load_policy(str(model_dir))
    model.eval()
    greedy, _ = evaluate_accuracy(model, tok, unique, verifier(cfg), MAX_NEW_TOKENS)
    metrics = evaluate_diversity(model, tok, unique, verifier(cfg), MAX_NEW_TOKENS, n=samples, answer_of=countdown_answer)
    return {"greedy_accuracy": greedy, **metrics, "n_prompts": len(unique)}


def run_seed(seed: int, args: argparse.Namespace) -> list[dict]:
    out = Path(args.out) / f"seed{seed}"
    sft_dir = out / "sft" / "final"
    sft = {**COMMON, "output_dir": str(out), "run_name": "sft", "seed": seed, "max_steps": args.sft_steps,
           "learning_rate": 1e-3, "batch_size": 64, "warmup_steps": 50, "max_new_tokens": MAX_NEW_TOKENS, "eval_n": 100}
    run_stage(out / "sft", {"method": "sft", **sft}, train=lambda: rewardlab.train("sft", sft), load=lambda: None)
    rows = [{"method": "sft", "seed": seed, **measure(sft_dir, args.eval_prompts, args.samples)}]
    for method in args.methods:
        t0 = time.time()
        rewardlab.train(method, {**COMMON, "model": str(sft_dir), "output_dir": str(out), "run_name": method, "seed": seed,
                                 "max_steps": args.rl_steps, "batch_size": 256, "num_generations": 8, "learning_rate": 3e-4,
                                 "max_completion_length": MAX_NEW_TOKENS, "eval_n": 100, "logging_steps": 25})
        rows.append({"method": method, "seed": seed, "train_time_s": time.time() - t0,
                     **measure(out / method / "final", args.eval_prompts, args.samples)})
    (out / "rows.json").write_text(json.dumps(rows, indent=2))
    return rows


def table(rows: list[dict]) -> str:
    columns = ["greedy_accuracy", "accuracy", "pass@1", "pass@4", "pass@16", "distinct_correct", "correct_answer_entropy", "answer_entropy"]
    lines = []
    for method in dict.fromkeys(r["method"] for r in rows):
        mine = [r for r in rows if r["method"] == method]
        cells = [method, str(len(mine))]
        for column in columns:
            values = [r[column] for r in mine]
            spread = statistics.stdev(values) if len(values) > 1 else 0.0
            cells.append(f"{statistics.mean(values):.3f} ± {spread:.3f}")
        lines.append(cells)
    return format_table(lines, ["method", "seeds", *columns])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2])
    parser.add_argument("--methods", nargs="+", default=["grpo", "flowrl"])
    parser.add_argument("--sft-steps", type=int, default=800)
    parser.add_argument("--rl-steps", type=int, default=150)
    parser.add_argument("--eval-prompts", type=int, default=100, help="distinct held-out prompts")
    parser.add_argument("--samples", type=int, default=16, help="samples per prompt for the diversity metrics")
    parser.add_argument("--out", default="runs/flowrl_countdown")
    parser.add_argument("--merge", nargs="*", default=[], help="rows.json files of other seeds to add to the table")
    args = parser.parse_args()
    rows = [row for seed in args.seeds for row in run_seed(seed, args)]
    for path in args.merge:
        rows += json.loads(Path(path).read_text())
    if rows:
        print(table(rows))


if __name__ == "__main__":
    main()
