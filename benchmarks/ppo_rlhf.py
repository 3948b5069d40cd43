"""PPO-RLHF on the synthetic preference task, measured against its hidden gold scorer.

    python benchmarks/ppo_rlhf.py [--seeds 0 1 2] [--steps 150] [--out runs/ppo_rlhf]

1. SFT cold start on the careless demonstrations of the `preference` task (examples/sft_preference.yaml).
2. A reward model on noisy Bradley-Terry pairs (examples/rm_preference.yaml), and a deliberately weak
   proxy reward model (the same recipe stopped early: --weak-steps, optionally on fewer pairs).
3. PPO against the good reward model from the SFT policy, one run per seed: the gold score of the
   policy's samples on held-out prompts before and after, the gold win rate against the SFT policy, and
   the explained variance of the value head.
4. Over-optimisation: PPO against the weak proxy with beta = 0, and the same budget with adaptive KL
   control. Proxy and gold reward are logged against sqrt(KL to the initial policy) every `eval_steps`;
   the reward-hacking monitor flags "proxy up, gold down". One PNG shows both runs.

Writes benchmarks/results/ppo_rlhf.md and docs/img/overoptimisation.png. Every number in them comes from
this run; nothing is copied in.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

from stages import run_stage  # benchmarks/ is on sys.path when a script there runs

import rewardlab
from rewardlab.config import load_config
from rewardlab.models import load_policy
from rewardlab.monitor import alarm_steps, format_table, plot_gold_vs_proxy, read_metrics
from rewardlab.tasks import make_task
from rewardlab.trainers.gold import gold_report, gold_samples
from rewardlab.trainers.inputs import eval_records

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "ppo_rlhf.md"
FIGURE = ROOT / "docs" / "img" / "overoptimisation.png"
COMMON = {"torch_threads": 1, "tensorboard": False}
PPO = {
    "task": "preference",
    "batch_size": 128,
    "num_generations": 8,
    "max_completion_length": 8,
    "learning_rate": 3e-4,
    "value_learning_rate": 1e-3,
    "temperature": 1.0,
    "logging_steps": 25,
    "eval_steps": 10,
    "eval_n": 200,
    "save_steps": 0,
}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=150, help="PPO steps against the good reward model")
    parser.add_argument("--hack-steps", type=int, default=300, help="PPO steps against the weak proxy")
    parser.add_argument("--weak-pairs", type=int, default=0, help="training pairs of the weak proxy (0: as many as its steps draw)")
    parser.add_argument("--weak-steps", type=int, default=250, help="training steps of the weak proxy (batch 64)")
    parser.add_argument("--hack-seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4],
                        help="seeds of the beta-0 over-optimisation runs (the monitor's rule was designed on seed 0's run)")
    parser.add_argument("--hack-lr", type=float, default=2e-4, help="policy learning rate of the over-optimisation runs")
    parser.add_argument("--eval-prompts", type=int, default=500, help="held-out prompts for the gold evaluation")
    parser.add_argument("--out", default="runs/ppo_rlhf")
    parser.add_argument("--results", default=str(RESULTS), help="markdown report to write")
    parser.add_argument("--figure", default=str(FIGURE), help="PNG of gold and proxy vs sqrt KL")
    return parser.parse_args()


def lag_summary(hack: dict, seeds: list[int]) -> str:
    """How early the monitor fires on the beta-0 runs it was not designed on (every seed but 0)."""
    fresh = [hack[f"beta 0, seed {seed}"] for seed in seeds if seed != 0]
    if not fresh:
        return ""
    lags = [h["alarm minus peak (steps)"] for h in fresh if h["alarm minus peak (steps)"] is not None]
    lost = [h["gold lost by the alarm (0-1)"] for h in fresh if h["gold lost by the alarm (0-1)"] is not None]
    fell = sum(h["peak gold (0-1)"] - h["final gold (0-1)"] > 0.05 for h in fresh)
    text = (f"Beta-0 runs on seeds the rule was not designed on: {len(fresh)}; gold fell more than 0.05 from its peak "
            f"by the end in {fell}; the monitor raised an alarm in {len(lags)}.")
    if lags:
        text += (f" First alarm after gold's peak: median {statistics.median(lags):.0f} steps (range {min(lags)} to "
                 f"{max(lags)}); gold lost between the peak and the alarm: median {statistics.median(lost):.3f} "
                 f"(range {min(lost):.3f} to {max(lost):.3f}).")
    return text


def gold_eval(model_dir: Path, n: int, reference_dir: Path | None = None) -> dict:
    """Gold score of samples (temperature 1) on n held-out prompts of eval seed 7, which no run trained on."""
    cfg = load_config("dpo", None, {"task": "preference", "eval_n": n, "eval_seed": 7})
    task, records = make_task("preference"), eval_records(cfg)
    model, tok = load_policy(str(model_dir))
    rows = gold_samples(model, tok, task, records, max_new_tokens=8, seed=7)
    reference = None
    if reference_dir is not None:
        ref_model, ref_tok = load_policy(str(reference_dir))
        reference = gold_samples(ref_model, ref_tok, task, records, max_new_tokens=8, seed=7)
    return gold_report(rows, reference)


def tail_mean(run: Path, key: str, n: int = 20) -> float:
    values = [r[key] for r in read_metrics(run) if isinstance(r.get(key), (int, float))]
    return statistics.fmean(values[-n:]) if values else float("nan")


def hack_row(run: Path, report: dict) -> dict:
    """One over-optimisation run: gold's peak among the monitor's evaluations, the monitor's first alarm, and
    how far gold had fallen from its peak when the alarm came."""
    evals = [r for r in read_metrics(run) if "hacking/gold" in r]
    best = max(evals, key=lambda r: r["hacking/gold"])
    alarms = alarm_steps(run)
    at_alarm = next((r for r in evals if alarms and r["step"] == alarms[0]), None)
    return {
        "run": run,
        "final gold, held-out (0-5)": report["gold_mean"],
        "gold at step 1 (0-1)": evals[0]["hacking/gold"],
        "peak gold (0-1)": best["hacking/gold"],
        "peak at step": best["step"],
        "final gold (0-1)": evals[-1]["hacking/gold"],
        "proxy start -> end": f"{evals[0]['hacking/proxy']:.2f} -> {evals[-1]['hacking/proxy']:.2f}",
        "final sqrt KL": evals[-1]["hacking/sqrt_kl"],
        "first alarm": alarms[0] if alarms else None,
        "alarm minus peak (steps)": alarms[0] - best["step"] if alarms else None,
        "gold lost by the alarm (0-1)": best["hacking/gold"] - at_alarm["hacking/gold"] if at_alarm else None,
        "alarmed evals": f"{len(alarms)} of {len(evals)}",
    }


def main() -> None:
    args = parse_args()
    out = Path(args.out)
    t0 = time.time()
    # 1-2. cold start, a good reward model and a weak one
    # (a stage finished under --out is reused only when it was trained with the same arguments, see stages.py)
    def stage(method: str, config, name: str, **overrides) -> dict:
        return run_stage(
            out / name, {"method": method, "config": config, "output_dir": str(out), "run_name": name, **COMMON, **overrides},
            train=lambda: rewardlab.train(method, config, output_dir=str(out), run_name=name, **COMMON, **overrides),
            load=lambda: json.loads((out / name / "summary.json").read_text()),
        )

    stage("sft", ROOT / "examples" / "sft_preference.yaml", "sft")
    sft = out / "sft" / "final"
    rm = stage("rm", ROOT / "examples" / "rm_preference.yaml", "rm", model=str(sft))
    weak = stage("rm", ROOT / "examples" / "rm_preference.yaml", "rm_weak", model=str(sft),
                 num_train_samples=args.weak_pairs, max_steps=args.weak_steps)
    sft_gold = gold_eval(sft, args.eval_prompts)

    # 3. PPO against the good reward model, one run per seed
    rows = []
    for seed in args.seeds:
        name = f"ppo_s{seed}"
        summary = stage("ppo", None, name, **PPO, model=str(sft), reward_model=str(out / "rm" / "final"),
                        max_steps=args.steps, seed=seed)
        report = gold_eval(out / name / "final", args.eval_prompts, reference_dir=sft)
        rows.append({
            "seed": seed,
            "gold before": sft_gold["gold_mean"],
            "gold after": report["gold_mean"],
            "perfect after": report["gold_perfect"],
            "win rate vs SFT": report["win_rate"],
            "explained variance (last 20 steps)": tail_mean(out / name, "explained_variance"),
            "proxy reward (last 20 steps)": tail_mean(out / name, "rewards/reward_model/mean"),
            "train s": summary["train_time_s"],
        })

    # 4. over-optimisation: the weak proxy without KL control on every hack seed, and with adaptive KL
    # control on the first; the monitor's first alarm is measured against gold's peak on each run
    hack = {}
    runs = [(f"beta 0, seed {seed}", {"beta": 0.0}, seed) for seed in args.hack_seeds]
    runs.append((f"adaptive KL, seed {args.hack_seeds[0]}", {"beta": 0.05, "kl_target": 1.0}, args.hack_seeds[0]))
    for label, extra, seed in runs:
        name = f"hack_beta0_s{seed}" if extra["beta"] == 0 else f"hack_kl_s{seed}"
        # a small enough step that the early evaluations see the policy improve before it exploits the proxy
        stage("ppo", None, name, **{**PPO, **extra, "learning_rate": args.hack_lr}, model=str(sft),
              reward_model=str(out / "rm_weak" / "final"), max_steps=args.hack_steps, seed=seed)
        hack[label] = hack_row(out / name, gold_eval(out / name / "final", args.eval_prompts, reference_dir=sft))
    plotted = [f"beta 0, seed {args.hack_seeds[0]}", f"adaptive KL, seed {args.hack_seeds[0]}"]
    plot_gold_vs_proxy({label: hack[label]["run"] for label in plotted}, args.figure,
                       title="PPO against a weak proxy reward model: gold and proxy vs sqrt KL")

    # report
    mean = lambda key: statistics.fmean(r[key] for r in rows)  # noqa: E731
    spread = lambda key: statistics.pstdev(r[key] for r in rows)  # noqa: E731
    lines = [
        "# PPO-RLHF on the synthetic preference task",
        "",
        f"Generated by `python benchmarks/ppo_rlhf.py --seeds {' '.join(map(str, args.seeds))} --steps {args.steps} "
        f"--hack-steps {args.hack_steps} --hack-seeds {' '.join(map(str, args.hack_seeds))} --weak-pairs {args.weak_pairs} --weak-steps {args.weak_steps} --hack-lr {args.hack_lr} --out {args.out}` in {time.time() - t0:.0f} s (stages already finished under --out with the same arguments are reused, not rerun or timed) on {platform.processor() or platform.machine()} "
        f"({os.cpu_count()} cores, 1 torch thread, shared with other jobs).",
        "",
        f"Reward model ({rm.get('steps')} steps): held-out pairwise accuracy {rm.get('eval_accuracy', float('nan')):.3f} on noisy labels "
        f"(summary: {json.dumps({k: v for k, v in rm.items() if 'accuracy' in k})}). Weak proxy "
        f"({weak.get('steps')} steps, {args.weak_pairs or 'all'} pairs): {json.dumps({k: v for k, v in weak.items() if 'accuracy' in k})}.",
        "",
        "## PPO against the reward model (gold scorer on 500 held-out prompts, eval seed 7, temperature 1)",
        "",
        format_table([{k: (f"{v:.3f}" if isinstance(v, float) else v) for k, v in r.items()} for r in rows]),
        "",
        f"Mean over seeds: gold {mean('gold before'):.3f} -> {mean('gold after'):.3f} ± {spread('gold after'):.3f} "
        f"(of 5); win rate vs SFT {mean('win rate vs SFT'):.3f} ± {spread('win rate vs SFT'):.3f}; explained variance "
        f"{mean('explained variance (last 20 steps)'):.3f} ± {spread('explained variance (last 20 steps)'):.3f}.",
        "",
        "## Over-optimisation: a weak proxy, without KL control on every hack seed, with adaptive KL control on the first",
        "",
        "Gold and proxy are the monitor's evaluations (the mean over the training samples of the steps since the "
        "last one; gold is the task reward / 5); the first evaluation is step 1, then one every "
        f"{PPO['eval_steps']} steps. The alarm rule was designed on seed 0's beta-0 run of an earlier version.",
        "",
        format_table([{"run": label, **{k: ("-" if v is None else f"{v:.3f}" if isinstance(v, float) else v)
                                        for k, v in h.items() if k != "run"}} for label, h in hack.items()]),
        "",
        lag_summary(hack, args.hack_seeds),
        "",
        f"![gold and proxy vs sqrt KL](../../docs/img/{Path(args.figure).name})",
        "",
    ]
    Path(args.results).parent.mkdir(parents=True, exist_ok=True)
    Path(args.results).write_text("\n".join(lines))
    Path(args.results).with_suffix(".json").write_text(json.dumps({
        "command": lines[2], "reward_model": rm, "weak_proxy": weak, "sft_gold": sft_gold, "ppo": rows,
        "overoptimisation": {label: {k: v for k, v in h.items() if k != "run"} for label, h in hack.items()},
    }, indent=2, default=str))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
