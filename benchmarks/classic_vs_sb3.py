"""Classic RL, rewardlab against Stable-Baselines3: same algorithm, environment, hyperparameters,
step budget and seeds, in one process, one library after the other, single-threaded.

    python benchmarks/classic_vs_sb3.py                                   # DQN, A2C, PPO on CartPole-v1, seeds 0 1 2
    python benchmarks/classic_vs_sb3.py --algos ppo --seeds 0 --steps 100000 --output /tmp/quick.md

For each (algorithm, seed) both libraries train from scratch; the order alternates between seeds so
drifting machine load does not favour one side. Speed is environment steps / wall time of the whole
training call (model construction included; rewardlab also writes its run directory: metrics,
checkpoint, plots). Final return: the trained greedy policy, 100 episodes on seeds 1000..1099, scored
by the same evaluation function for both.

Hyperparameters: rewardlab's defaults (docs/algorithms.md#classic-rl-defaults), translated where the libraries spell the
same thing differently (see sb3_model). Where one library lacks an option, both run without it:
- PPO: value clipping off (SB3's clip_range_vf clips differently from CleanRL's clip_vloss).
- DQN: plain DQN targets (SB3 has no Double DQN). SB3 hard-codes the Huber loss; with it, CleanRL's
  CartPole setting fails in both libraries (seed 0: greedy return 9.3 in each), so this script makes
  SB3's DQN module use MSE, CleanRL's loss and rewardlab's default. SB3 always calls clip_grad_norm_;
  both get a bound of 1e6, which no gradient reaches: the same work, no clipping.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before numpy/torch load their thread pools

import argparse
import datetime
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import gymnasium
import numpy as np
import stable_baselines3
import stable_baselines3.dqn.dqn as sb3_dqn_module
import torch
from stable_baselines3 import A2C, DQN, PPO
from stable_baselines3.common.env_util import make_vec_env
from torch import nn

from rewardlab.classic import a2c, dqn, ppo
from rewardlab.classic.evaluate import evaluate

ENV_ID = "CartPole-v1"
EVAL_SEED = 1000

# rewardlab config fields per algorithm: the defaults, plus what makes them the same algorithm as SB3's
REWARDLAB = {
    "ppo": (ppo, ppo.PPOConfig, {"clip_vloss": False}),  # SB3 clips the value differently; both off
    "a2c": (a2c, a2c.A2CConfig, {}),
    "dqn": (dqn, dqn.DQNConfig, {"double_dqn": False, "max_grad_norm": 1e6}),
}


class FunctionalWithMSE:
    """torch.nn.functional with smooth_l1_loss replaced by mse_loss, installed as SB3 DQN's `F`."""

    smooth_l1_loss = staticmethod(torch.nn.functional.mse_loss)

    def __getattr__(self, name: str):
        return getattr(torch.nn.functional, name)


def linear_schedule(initial: float):
    return lambda progress_remaining: initial * progress_remaining


def sb3_model(algo: str, config, seed: int):
    """The SB3 model with the same hyperparameters as the rewardlab `config`."""
    if algo == "ppo":
        return PPO(
            "MlpPolicy", make_vec_env(ENV_ID, n_envs=config.num_envs, seed=seed),
            n_steps=config.num_steps, batch_size=config.num_envs * config.num_steps // config.num_minibatches,
            n_epochs=config.update_epochs,
            learning_rate=linear_schedule(config.learning_rate) if config.anneal_lr else config.learning_rate,
            gamma=config.gamma, gae_lambda=config.gae_lambda, clip_range=config.clip_coef, clip_range_vf=None,
            normalize_advantage=config.norm_adv, ent_coef=config.ent_coef,
            vf_coef=config.vf_coef * 0.5,  # rewardlab's value loss is 0.5 * MSE (CleanRL), SB3's is MSE
            max_grad_norm=config.max_grad_norm,  # Adam eps 1e-5 and orthogonal init are SB3's PPO defaults too
            policy_kwargs={"net_arch": {"pi": list(config.hidden_sizes), "vf": list(config.hidden_sizes)}, "activation_fn": nn.Tanh},
            seed=seed, device="cpu", verbose=0,
        )
    if algo == "a2c":
        return A2C(
            "MlpPolicy", make_vec_env(ENV_ID, n_envs=config.num_envs, seed=seed),
            n_steps=config.num_steps,
            learning_rate=linear_schedule(config.learning_rate) if config.anneal_lr else config.learning_rate,
            gamma=config.gamma, gae_lambda=config.gae_lambda, ent_coef=config.ent_coef, vf_coef=config.vf_coef,
            max_grad_norm=config.max_grad_norm, use_rms_prop=config.optimizer == "rmsprop", rms_prop_eps=1e-5,
            normalize_advantage=config.norm_adv,
            policy_kwargs={"net_arch": {"pi": list(config.hidden_sizes), "vf": list(config.hidden_sizes)}, "activation_fn": nn.Tanh},
            seed=seed, device="cpu", verbose=0,
        )
    if algo == "dqn":
        if config.loss == "mse":
            sb3_dqn_module.F = FunctionalWithMSE()
        return DQN(
            "MlpPolicy", make_vec_env(ENV_ID, n_envs=1, seed=seed),
            learning_rate=config.learning_rate, buffer_size=config.buffer_size, learning_starts=config.learning_starts,
            batch_size=config.batch_size, tau=config.tau, gamma=config.gamma, train_freq=config.train_frequency,
            gradient_steps=config.gradient_steps, target_update_interval=config.target_network_frequency,
            exploration_fraction=config.exploration_fraction, exploration_initial_eps=config.epsilon_start,
            exploration_final_eps=config.epsilon_end, max_grad_norm=config.max_grad_norm,
            policy_kwargs={"net_arch": list(config.hidden_sizes), "activation_fn": nn.ReLU},
            seed=seed, device="cpu", verbose=0,
        )
    raise ValueError(f"unknown algo {algo!r}; valid: {', '.join(REWARDLAB)}")


class SB3Policy:
    """SB3 model behind rewardlab's Policy.act, so one evaluation function scores both."""

    def __init__(self, model):
        self.model = model

    def act(self, obs, deterministic: bool = True):
        action, _ = self.model.predict(obs, deterministic=deterministic)
        return int(action)


def run_rewardlab(algo: str, seed: int, steps: int | None, runs_dir: Path) -> dict:
    module, config_class, fields = REWARDLAB[algo]
    budget = {"total_steps": steps} if steps else {}
    config = config_class(env_id=ENV_ID, seed=seed, runs_dir=str(runs_dir), name=f"{algo}-seed{seed}", progress=False,
                          tensorboard=False, eval_episodes=0, checkpoint_every=0, **fields, **budget)
    start = time.perf_counter()
    policy, history = module.train(config)
    seconds = time.perf_counter() - start
    return {"steps": history[-1]["step"], "seconds": seconds, "policy": policy, "config": config}


def run_sb3(algo: str, config, seed: int) -> dict:
    start = time.perf_counter()
    model = sb3_model(algo, config, seed)
    model.learn(total_timesteps=config.total_steps)
    seconds = time.perf_counter() - start
    return {"steps": model.num_timesteps, "seconds": seconds, "policy": SB3Policy(model)}


def machine() -> str:
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        model = next(line.split(":", 1)[1].strip() for line in lscpu.splitlines() if line.startswith("Model name"))
    except (OSError, subprocess.CalledProcessError, StopIteration):
        model = platform.processor() or "unknown CPU"
    return (f"{model}, {os.cpu_count()} cores visible, 1 torch thread (OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}); "
            f"Python {platform.python_version()}, torch {torch.__version__}, gymnasium {gymnasium.__version__}, "
            f"stable-baselines3 {stable_baselines3.__version__}")


def mean_std(values) -> str:
    return f"{np.mean(values):.1f} ± {np.std(values):.1f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--algos", nargs="+", default=["dqn", "a2c", "ppo"], choices=list(REWARDLAB))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--steps", type=int, help="override every algorithm's step budget (default: rewardlab's total_steps)")
    parser.add_argument("--episodes", type=int, default=100, help="evaluation episodes per trained policy")
    parser.add_argument("--output", type=Path, default=Path(__file__).parent / "results" / "classic_vs_sb3.md")
    args = parser.parse_args(argv)

    torch.set_num_threads(1)
    # Pay one-time import costs (torch.optim pulls in torch._dynamo, ~1.5 s) before any clock starts.
    torch.optim.Adam([torch.zeros(1, requires_grad=True)])
    runs_dir = Path(tempfile.mkdtemp(prefix="classic_vs_sb3-"))
    rows = []
    try:
        for algo in args.algos:
            for index, seed in enumerate(args.seeds):
                results = {}
                order = ("rewardlab", "sb3") if index % 2 == 0 else ("sb3", "rewardlab")
                for library in order:
                    if library == "rewardlab":
                        results["rewardlab"] = run_rewardlab(algo, seed, args.steps, runs_dir)
                    else:  # built from the rewardlab config, so the rewardlab config is made first when SB3 runs first
                        module, config_class, fields = REWARDLAB[algo]
                        budget = {"total_steps": args.steps} if args.steps else {}
                        config = config_class(env_id=ENV_ID, seed=seed, **fields, **budget)
                        results["sb3"] = run_sb3(algo, config, seed)
                row = {"algo": algo, "seed": seed, "order": order}
                for library, result in results.items():
                    scores = evaluate(result["policy"], ENV_ID, args.episodes, EVAL_SEED)
                    row[library] = {"steps": result["steps"], "seconds": result["seconds"],
                                    "sps": result["steps"] / result["seconds"], "return": scores.mean, "return_std": scores.std}
                row["ratio"] = row["rewardlab"]["sps"] / row["sb3"]["sps"]
                rows.append(row)
                print(f"{algo} seed {seed}: rewardlab {row['rewardlab']['sps']:,.0f} steps/s return {row['rewardlab']['return']:.1f} | "
                      f"SB3 {row['sb3']['sps']:,.0f} steps/s return {row['sb3']['return']:.1f} | ratio {row['ratio']:.2f}x", flush=True)
    finally:
        shutil.rmtree(runs_dir, ignore_errors=True)

    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(report(rows, args, " ".join(["python", *sys.argv])))
    print(f"wrote {args.output}")
    return 0


def report(rows: list[dict], args, command: str) -> str:
    lines = [
        "# Classic RL: rewardlab vs Stable-Baselines3",
        "",
        f"Generated {datetime.date.today().isoformat()} by `{command}` (see the docstring of benchmarks/classic_vs_sb3.py).",
        "",
        f"Machine: {machine()}. Other jobs shared the 2 cores; each (algorithm, seed) pair ran back to back, "
        "alternating which library went first.",
        "",
        f"Environment {ENV_ID}; seeds {', '.join(map(str, args.seeds))}; greedy evaluation over {args.episodes} episodes "
        f"(seeds {EVAL_SEED}..{EVAL_SEED + args.episodes - 1}), same function for both libraries.",
        "",
        "| algorithm | env steps | rewardlab steps/s | SB3 steps/s | speed ratio (rewardlab / SB3) | rewardlab return | SB3 return |",
        "|---|---|---|---|---|---|---|",
    ]
    for algo in args.algos:
        group = [row for row in rows if row["algo"] == algo]
        ratios = [row["ratio"] for row in group]
        lines.append(
            f"| {algo.upper()} | {group[0]['rewardlab']['steps']:,} | {mean_std([r['rewardlab']['sps'] for r in group])} | "
            f"{mean_std([r['sb3']['sps'] for r in group])} | {np.mean(ratios):.2f}x (min {min(ratios):.2f}x) | "
            f"{mean_std([r['rewardlab']['return'] for r in group])} | {mean_std([r['sb3']['return'] for r in group])} |"
        )
    lines += [
        "",
        "Returns are mean ± std over seeds of each seed's 100-episode mean; steps/s likewise.",
        "",
        "Per seed:",
        "",
        "| algorithm | seed | first | rewardlab s | SB3 s | rewardlab steps/s | SB3 steps/s | ratio | rewardlab return | SB3 return |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        ours, theirs = row["rewardlab"], row["sb3"]
        lines.append(
            f"| {row['algo'].upper()} | {row['seed']} | {row['order'][0]} | {ours['seconds']:.1f} | {theirs['seconds']:.1f} | "
            f"{ours['sps']:,.0f} | {theirs['sps']:,.0f} | {row['ratio']:.2f}x | "
            f"{ours['return']:.1f} ± {ours['return_std']:.1f} | {theirs['return']:.1f} ± {theirs['return_std']:.1f} |"
        )
    lines += ["", "Hyperparameters (rewardlab field = SB3 argument):", ""]
    for algo in args.algos:
        _, config_class, fields = REWARDLAB[algo]
        config = config_class(**fields)
        shown = {k: v for k, v in config.to_dict().items() if k not in RUN_FIELDS}
        lines.append(f"- {algo.upper()}: " + ", ".join(f"{k}={v}" for k, v in shown.items() if k != "algo"))
    return "\n".join(lines) + "\n"


RUN_FIELDS = {"env_id", "env_kwargs", "seed", "name", "runs_dir", "log_every", "checkpoint_every", "keep_checkpoints",
              "resume", "eval_episodes", "torch_threads", "progress", "tensorboard"}


if __name__ == "__main__":
    sys.exit(main())
