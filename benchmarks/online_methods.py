"""GRPO, RLOO, REINFORCE++ and PPO on the demo's arithmetic task: same start, same budget, 5 seeds.

    python benchmarks/online_methods.py [--seeds 0 1 2 3 4] [--methods grpo rloo reinforce_pp ppo] [--out runs/online_methods]

For each seed: the demo's SFT cold start (rewardlab/demo.py settings, that seed), then every method from
that SFT model with the demo's GRPO budget (steps, prompts per step, group size, learning rate, lengths).
Each method keeps its own defaults otherwise (config.py METHOD_PRESETS): GRPO and RLOO put no KL term in
the loss (beta 0); REINFORCE++ and PPO put a KL penalty of 0.05 in the reward, and PPO runs 4 epochs per
rollout with a critic. Held-out accuracy is measured on the test split (eval seed 7, greedy, 500
distinct problems, none of them in training in either operand order). Each method is compared with the
first one listed by the per-seed difference: its mean, 95% t interval, and an exact sign-flip p-value;
"no difference" when the interval contains 0. Wall time is the training loop; tokens are completion
tokens generated.

Writes benchmarks/results/online_methods.md.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import json
import platform
import statistics
import time
from functools import partial
from pathlib import Path

import yaml
from stages import run_stage  # benchmarks/ is on sys.path when a script there runs
from stats import mean_sd, paired, verdict

import rewardlab
from rewardlab.config import config_to_dict
from rewardlab.demo import DEMO_GRPO, demo_configs
from rewardlab.models import load_policy
from rewardlab.monitor import format_table, read_metrics
from rewardlab.trainers import train_sft
from rewardlab.trainers.evaluate import evaluate_accuracy
from rewardlab.trainers.inputs import eval_records, verifier

RESULTS = Path(__file__).resolve().parent / "results" / "online_methods.md"


def method_spec(method: str) -> tuple[str, dict, str]:
    """"ppo" -> ("ppo", {}, "ppo"); "ppo:num_iterations=2" -> ("ppo", {"num_iterations": 2}, "ppo-num_iterations2"):
    a method preset with its own overrides, run under its own name."""
    preset, _, extra = method.partition(":")
    overrides = {}
    for item in filter(None, extra.split(",")):
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--methods {method!r}: write overrides as METHOD:key=value[,key=value]")
        overrides[key] = yaml.safe_load(value)
    return preset, overrides, method.replace(":", "-").replace(",", "-").replace("=", "")


def heldout_accuracy(model_dir: Path, cfg) -> float:
    model, tok = load_policy(str(model_dir))
    records = eval_records(cfg, n=500, seed=7)
    return evaluate_accuracy(model, tok, records, verifier(cfg), cfg.max_completion_length)[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2, 3, 4], help="(none with --merge: only build the table)")
    parser.add_argument("--methods", nargs="+", default=["grpo", "rloo", "reinforce_pp", "ppo"],
                        help="method presets, each optionally with overrides: ppo:num_iterations=2")
    parser.add_argument("--steps", type=int, default=DEMO_GRPO["max_steps"], help="RL steps per method (default: the demo's)")
    parser.add_argument("--out", default="runs/online_methods")
    parser.add_argument("--results", default=str(RESULTS), help="markdown file to write")
    parser.add_argument("--merge", nargs="*", default=[], help="JSON rows of earlier runs (e.g. other seeds) to add to the table")
    args = parser.parse_args()
    t0 = time.time()
    rows = []
    for seed in args.seeds:
        out = Path(args.out) / f"seed{seed}"
        sft_cfg, grpo_cfg = demo_configs(str(out), seed)
        sft_cfg.torch_threads = 1
        run_stage(sft_cfg.run_dir, config_to_dict(sft_cfg), train=partial(train_sft, sft_cfg), load=lambda: None)
        sft_accuracy = heldout_accuracy(sft_cfg.run_dir / "final", grpo_cfg)
        for method in args.methods:
            preset, overrides, run_name = method_spec(method)
            budget = {k: v for k, v in DEMO_GRPO.items() if k not in ("save_steps", "eval_steps")} | {"max_steps": args.steps}
            summary = rewardlab.train(
                preset, None, **budget | overrides, model=str(sft_cfg.run_dir / "final"), seed=seed, output_dir=str(out),
                run_name=run_name, torch_threads=1, tensorboard=False, eval_steps=0, save_steps=0,
            )
            metrics = [r for r in read_metrics(out / run_name) if "tokens_generated" in r]
            rows.append({
                "seed": seed,
                "method": method,
                "SFT accuracy": sft_accuracy,
                "final accuracy": heldout_accuracy(out / run_name / "final", grpo_cfg),
                "train time s": summary["train_time_s"],
                "tokens generated": sum(r["tokens_generated"] for r in metrics),
            })
            print(format_table(rows[-1:]))

    ran = bool(rows)
    for path in args.merge:
        rows += json.loads(Path(path).read_text())
    if rows:
        Path(args.results).with_suffix(".json").write_text(json.dumps(rows, indent=2))
    summary_rows = []
    baseline = args.methods[0]
    by_seed = {(r["method"], r["seed"]): r for r in rows}
    for method in args.methods:
        mine = sorted((r for r in rows if r["method"] == method), key=lambda r: r["seed"])
        acc = [100 * r["final accuracy"] for r in mine]
        gain = [100 * (r["final accuracy"] - r["SFT accuracy"]) for r in mine]
        (acc_mean, acc_sd), (gain_mean, gain_sd) = mean_sd(acc), mean_sd(gain)
        row = {
            "method": method,
            "held-out accuracy (mean ± sd)": f"{acc_mean:.1f} ± {acc_sd:.1f}",
            "gain over SFT (points)": f"{gain_mean:+.1f} ± {gain_sd:.1f}",
            "per seed": " / ".join(f"{a:.1f}" for a in acc),
        }
        if method != baseline:
            base = [100 * by_seed[(baseline, r["seed"])]["final accuracy"] for r in mine]
            diff = paired(acc, base)
            row[f"minus {baseline} (95% CI, p)"] = (f"{diff['mean']:+.1f} [{diff['low']:+.1f}, {diff['high']:+.1f}], "
                                                    f"p={diff['p']:.2f}: {verdict(diff)}")
        else:
            row[f"minus {baseline} (95% CI, p)"] = "-"
        row["train time s (mean)"] = f"{statistics.fmean(r['train time s'] for r in mine):.0f}"
        row["tokens generated (mean)"] = f"{statistics.fmean(r['tokens generated'] for r in mine):,.0f}"
        summary_rows.append(row)
    text = "\n".join([
        "# GRPO, RLOO, REINFORCE++ and PPO on arithmetic",
        "",
        (f"Generated by `python benchmarks/online_methods.py --seeds {' '.join(map(str, args.seeds))} --steps {args.steps}`"
         f" in {time.time() - t0:.0f} s" if ran else
         f"Built by `python benchmarks/online_methods.py --seeds --steps {args.steps} --merge {' '.join(args.merge)}`")
        + (f" (with the rows of earlier runs of this script in {', '.join(args.merge)})" if args.merge and ran else "")
        + f" on {platform.processor() or platform.machine()} ({os.cpu_count()} cores, 1 torch "
        "thread per run, other jobs sharing the machine: compare times within this table only).",
        "",
        "Start: the demo's SFT model of each seed. Budget: the demo's GRPO settings "
        f"({args.steps} steps x {DEMO_GRPO['batch_size']} completions, group {DEMO_GRPO['num_generations']}, "
        f"lr {DEMO_GRPO['learning_rate']}). Held-out: 500 distinct test-split problems of eval seed 7, greedy. "
        "Spread: sample sd over seeds; differences are paired by seed.",
        "",
        format_table(summary_rows),
        "",
        "Per run:",
        "",
        format_table([{k: (f"{v:.3f}" if isinstance(v, float) else v) for k, v in r.items()} for r in rows]),
        "",
    ])
    Path(args.results).parent.mkdir(parents=True, exist_ok=True)
    Path(args.results).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
