"""`rewardlab demo`: the whole story on a laptop CPU in minutes.

1. build the built-in tiny model (char tokenizer with a chat template),
2. cold-start it with a short SFT on the arithmetic task,
3. measure held-out greedy accuracy,
4. run GRPO with the task's verifier as the reward,
5. measure again, print a before/after table, write runs/demo/.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from .config import GRPOConfig, SFTConfig, load_config
from .data import load_records
from .monitor import format_table
from .tasks.arithmetic import accuracy_by_carry

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

# The demo's settings; examples/sft_arithmetic.yaml and examples/grpo_arithmetic.yaml hold the same values.
# The SFT demonstrations forget the carry 70% of the time; the verifier (and so GRPO's reward) is exact.
# Answers are written least-significant digit first ("17+25=" -> "24"), the order in which a carry is
# worked out, so that the tiny model can represent the correct rule and GRPO can find it in its samples.
DEMO_TASK = {"max_digits": 2, "sloppy_carry_rate": 0.7, "reverse_answer": True}
DEMO_SFT = {"max_steps": 1000, "batch_size": 64, "learning_rate": 1e-3, "warmup_steps": 50, "task_options": DEMO_TASK}
DEMO_GRPO = {
    "max_steps": 300,
    "batch_size": 256,
    "num_generations": 8,
    "learning_rate": 3e-4,
    "max_completion_length": 6,
    "eval_steps": 50,
    "logging_steps": 25,
    "save_steps": 50,
    "task_options": DEMO_TASK,
}


def demo_configs(output_dir: str = "runs", seed: int = 0, **overrides) -> tuple[SFTConfig, GRPOConfig]:
    run = Path(output_dir) / "demo"
    # the demo is a fixed recipe: running it again replaces its earlier runs
    sft = load_config("sft", None, {**DEMO_SFT, "output_dir": str(run), "run_name": "sft", "seed": seed, "overwrite": True})
    grpo = load_config(
        "grpo",
        None,
        {**DEMO_GRPO, "model": str(run / "sft" / "final"), "output_dir": output_dir, "run_name": "demo", "seed": seed, "overwrite": True, **overrides},
    )
    return sft, grpo


def run_demo(output_dir: str = "runs", seed: int = 0, **overrides) -> dict:
    from .trainers import train_grpo, train_sft

    sft_cfg, grpo_cfg = demo_configs(output_dir, seed, **overrides)
    t0 = time.time()
    sft = train_sft(sft_cfg)
    t_sft = time.time() - t0
    grpo = train_grpo(grpo_cfg)
    t_total = time.time() - t0
    summary = {
        "seed": seed,
        "sft_accuracy": sft["eval_accuracy"],
        "grpo_accuracy": grpo["eval_accuracy"],
        "gain_points": 100 * (grpo["eval_accuracy"] - sft["eval_accuracy"]),
        "eval_n": grpo_cfg.eval_n,
        "sft_time_s": t_sft,
        "grpo_time_s": grpo["train_time_s"],
        "total_time_s": t_total,
    }
    run_dir = grpo_cfg.run_dir
    split = {name: accuracy_by_carry(load_records(cfg.run_dir / "eval_samples.jsonl")) for name, cfg in (("sft", sft_cfg), ("grpo", grpo_cfg))}
    for name, acc in split.items():
        summary[f"{name}_accuracy_carry"], summary[f"{name}_accuracy_no_carry"] = acc["carry"], acc["no_carry"]
    (run_dir / "summary.json").write_text(json.dumps({**grpo, **summary}, indent=2))
    pct = lambda x: f"{100 * x:.1f}%"  # noqa: E731
    print()
    print(format_table(
        [
            ["SFT (cold start)", pct(sft["eval_accuracy"]), pct(split["sft"]["carry"]), pct(split["sft"]["no_carry"]), f"{t_sft:.0f}s"],
            ["+ GRPO", pct(grpo["eval_accuracy"]), pct(split["grpo"]["carry"]), pct(split["grpo"]["no_carry"]), f"{grpo['train_time_s']:.0f}s"],
        ],
        [
            "model",
            f"held-out accuracy ({grpo_cfg.eval_n} problems, greedy)",
            f"with a carry ({split['sft']['n_carry']})",
            f"without ({split['sft']['n_no_carry']})",
            "time",
        ],
    ))
    print(f"\nrun directory: {run_dir}  (SFT model: {run_dir / 'sft' / 'final'}; total {t_total:.0f}s)")
    return summary
