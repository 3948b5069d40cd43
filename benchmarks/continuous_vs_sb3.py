"""SAC on Pendulum-v1, rewardlab against Stable-Baselines3: same hyperparameters, step budget and seeds,
in one process, one library after the other, single-threaded.

    python benchmarks/continuous_vs_sb3.py                      # seeds 0 1 2, 10,000 steps each
    python benchmarks/continuous_vs_sb3.py --steps 20000 --seeds 0 1 2 3 4
    python benchmarks/continuous_vs_sb3.py --quick              # smoke run: 1 seed, 1,500 steps, 5 episodes

For each seed both libraries train from scratch; the order alternates between seeds so drifting machine
load does not favour one side. Wall time is the whole training call (model construction included;
rewardlab also writes its run directory). Each trained policy acts deterministically (tanh of the
Gaussian mean) for 100 episodes on seeds 1000..1099, disjoint from the training seeds, scored by the
same evaluation function for both libraries.

Hyperparameters: rewardlab's SACConfig defaults, which are SB3's SAC defaults (one lr for actor, critics
and entropy coefficient; batch 256; tau 0.005; train_freq 1, gradient_steps 1; 256-256 ReLU networks;
automatic entropy tuning from alpha = 1 with target entropy -dim(A)), with RL Zoo's Pendulum learning
rate 1e-3 and learning_starts 1000 for both. The step budget was chosen on tune seed 100 (not reported):
rewardlab's training return there was about -100 from 6,000 steps on, so 10,000 steps leave a margin
while fitting the benchmark into a shared 2-core machine's time budget.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before numpy/torch load their thread pools

import argparse
import datetime
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import gymnasium
import numpy as np
import torch
from classic_vs_sb3 import machine  # noqa: E402  (benchmarks/ is on sys.path when a script there runs)
from stable_baselines3 import SAC
from torch import nn

from rewardlab.classic import sac
from rewardlab.classic.evaluate import evaluate

ENV_ID = "Pendulum-v1"
EVAL_SEED = 1000
STEPS = 10_000
# what both libraries run with, on top of rewardlab's defaults (= SB3's)
FIELDS = {"learning_rate": 1e-3, "learning_starts": 1_000}
RESULTS = Path(__file__).parent / "results"


def sb3_model(config: sac.SACConfig, seed: int) -> SAC:
    """SB3's SAC with the same hyperparameters as the rewardlab `config`."""
    return SAC(
        "MlpPolicy", gymnasium.make(ENV_ID),
        learning_rate=config.learning_rate, buffer_size=config.buffer_size, learning_starts=config.learning_starts,
        batch_size=config.batch_size, tau=config.tau, gamma=config.gamma, train_freq=config.train_frequency,
        gradient_steps=config.gradient_steps, target_update_interval=config.target_network_frequency,
        ent_coef=f"auto_{config.alpha}" if config.autotune else config.alpha,
        target_entropy="auto" if config.target_entropy is None else config.target_entropy,
        policy_kwargs={"net_arch": list(config.hidden_sizes), "activation_fn": nn.ReLU},
        seed=seed, device="cpu", verbose=0,
    )


class SB3Policy:
    """SB3 model behind rewardlab's Policy.act, so one evaluation function scores both."""

    def __init__(self, model):
        self.model = model

    def act(self, obs, deterministic: bool = True):
        action, _ = self.model.predict(obs, deterministic=deterministic)
        return action


def make_config(seed: int, steps: int, runs_dir: Path | None = None) -> sac.SACConfig:
    run = {"runs_dir": str(runs_dir), "name": f"sac-seed{seed}"} if runs_dir else {}
    return sac.SACConfig(env_id=ENV_ID, seed=seed, total_steps=steps, progress=False, tensorboard=False, eval_episodes=0,
                         checkpoint_every=0, **FIELDS, **run)


def run_rewardlab(seed: int, steps: int, runs_dir: Path) -> dict:
    config = make_config(seed, steps, runs_dir)
    start = time.perf_counter()
    policy, history = sac.train(config)
    return {"steps": history[-1]["step"], "seconds": time.perf_counter() - start, "policy": policy}


def run_sb3(seed: int, steps: int) -> dict:
    config = make_config(seed, steps)
    start = time.perf_counter()
    model = sb3_model(config, seed)
    model.learn(total_timesteps=config.total_steps)
    return {"steps": model.num_timesteps, "seconds": time.perf_counter() - start, "policy": SB3Policy(model)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=STEPS, help="environment steps per training run (both libraries)")
    parser.add_argument("--episodes", type=int, default=100, help="evaluation episodes per trained policy")
    parser.add_argument("--quick", action="store_true", help="smoke run: seed 0, 1,500 steps, 5 episodes, output to a temp dir")
    parser.add_argument("--output", type=Path, default=RESULTS / "continuous_vs_sb3.md", help="the .md; the .json goes next to it")
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.steps, args.episodes = [0], 1_500, 5
        if args.output == RESULTS / "continuous_vs_sb3.md":
            args.output = Path(tempfile.mkdtemp(prefix="continuous_vs_sb3-quick-")) / "continuous_vs_sb3.md"

    torch.set_num_threads(1)
    torch.optim.Adam([torch.zeros(1, requires_grad=True)])  # pay one-time import costs before any clock starts
    runs_dir = Path(tempfile.mkdtemp(prefix="continuous_vs_sb3-"))
    rows = []
    try:
        for index, seed in enumerate(args.seeds):
            order = ("rewardlab", "sb3") if index % 2 == 0 else ("sb3", "rewardlab")
            results = {library: run_rewardlab(seed, args.steps, runs_dir) if library == "rewardlab" else run_sb3(seed, args.steps)
                       for library in order}
            row = {"seed": seed, "first": order[0]}
            for library, result in results.items():
                scores = evaluate(result["policy"], ENV_ID, args.episodes, EVAL_SEED)
                row[library] = {"steps": result["steps"], "seconds": result["seconds"], "return": scores.mean,
                                "return_std": scores.std, "return_min": float(min(scores.returns))}
            row["time_ratio"] = row["rewardlab"]["seconds"] / row["sb3"]["seconds"]
            rows.append(row)
            print(f"seed {seed}: rewardlab {row['rewardlab']['seconds']:.0f} s return {row['rewardlab']['return']:.1f} | "
                  f"SB3 {row['sb3']['seconds']:.0f} s return {row['sb3']['return']:.1f} | time ratio {row['time_ratio']:.2f}", flush=True)
    finally:
        shutil.rmtree(runs_dir, ignore_errors=True)

    summary = summarise(rows)
    command = " ".join(["python", *sys.argv]) if argv is None else "python benchmarks/continuous_vs_sb3.py " + " ".join(argv)
    data = {"env_id": ENV_ID, "steps": args.steps, "seeds": args.seeds, "eval_episodes": args.episodes, "eval_seed": EVAL_SEED,
            "deterministic": True, "hyperparameters": {k: v for k, v in make_config(0, args.steps).to_dict().items() if k not in RUN_FIELDS},
            "machine": machine(), "date": datetime.date.today().isoformat(), "command": command, "rows": rows, "summary": summary}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(report(data))
    args.output.with_suffix(".json").write_text(json.dumps(data, indent=2) + "\n")
    print(f"wrote {args.output} and {args.output.with_suffix('.json')}")
    return 0


def summarise(rows: list[dict]) -> dict:
    def stats(values):
        values = np.asarray(values, dtype=float)
        return {"mean": float(values.mean()), "sd": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
                "min": float(values.min()), "max": float(values.max())}

    out = {library: {"return": stats([row[library]["return"] for row in rows]),
                     "seconds": stats([row[library]["seconds"] for row in rows])} for library in ("rewardlab", "sb3")}
    out["time_ratio"] = stats([row["time_ratio"] for row in rows])
    out["rewardlab_all_seeds_at_least_-200"] = all(row["rewardlab"]["return"] >= -200 for row in rows)
    out["rewardlab_mean_at_least_-200"] = out["rewardlab"]["return"]["mean"] >= -200
    return out


def report(data: dict) -> str:
    s, rows = data["summary"], data["rows"]
    lines = [
        "# SAC on Pendulum-v1: rewardlab vs Stable-Baselines3",
        "",
        f"Generated {data['date']} by `{data['command']}` (see the docstring of benchmarks/continuous_vs_sb3.py).",
        "",
        f"Machine: {data['machine']}. Other jobs shared the 2 cores; each seed's two runs went back to back, alternating "
        "which library went first.",
        "",
        f"{data['steps']:,} environment steps per run; training seeds {', '.join(map(str, data['seeds']))}; deterministic "
        f"evaluation (mean action) over {data['eval_episodes']} episodes on seeds {data['eval_seed']}.."
        f"{data['eval_seed'] + data['eval_episodes'] - 1}, the same function for both libraries.",
        "",
        "| library | return, mean ± sd over seeds | worst seed | train wall time per seed, s (mean) |",
        "|---|---|---|---|",
    ]
    for library, label in (("rewardlab", "rewardlab"), ("sb3", "SB3")):
        r, t = s[library]["return"], s[library]["seconds"]
        lines.append(f"| {label} | **{r['mean']:.1f}** ± {r['sd']:.1f} | {r['min']:.1f} | {t['mean']:.0f} |")
    ratio = s["time_ratio"]
    lines += [
        "",
        f"Wall-time ratio rewardlab / SB3 (per seed, then averaged): **{ratio['mean']:.2f}** (range {ratio['min']:.2f}-{ratio['max']:.2f}); "
        "below 1 means rewardlab is faster.",
        "",
        f"Aim (rewardlab mean return ≥ -200 over {data['eval_episodes']} episodes, on each seed): "
        f"{'met' if s['rewardlab_all_seeds_at_least_-200'] else 'NOT met'}; mean over seeds ≥ -200: "
        f"{'yes' if s['rewardlab_mean_at_least_-200'] else 'no'}.",
        "",
        "Per seed (return: mean ± sd over the evaluation episodes):",
        "",
        "| seed | first | rewardlab s | SB3 s | ratio | rewardlab return | SB3 return |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        ours, theirs = row["rewardlab"], row["sb3"]
        lines.append(f"| {row['seed']} | {row['first']} | {ours['seconds']:.1f} | {theirs['seconds']:.1f} | {row['time_ratio']:.2f} | "
                     f"{ours['return']:.1f} ± {ours['return_std']:.1f} | {theirs['return']:.1f} ± {theirs['return_std']:.1f} |")
    lines += ["", "Hyperparameters (both libraries): " + ", ".join(f"{k}={v}" for k, v in data["hyperparameters"].items() if k != "algo")]
    return "\n".join(lines) + "\n"


RUN_FIELDS = {"env_id", "env_kwargs", "seed", "name", "runs_dir", "log_every", "checkpoint_every", "keep_checkpoints",
              "resume", "overwrite", "eval_episodes", "torch_threads", "progress", "tensorboard"}


if __name__ == "__main__":
    sys.exit(main())
