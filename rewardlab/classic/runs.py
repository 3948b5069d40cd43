"""The run directory every classic algorithm writes (layout below; docs/architecture.md#run-directories), plus seeding and resume.

    runs/<name>/
      config.yaml           the resolved config that ran
      metrics.jsonl         one JSON object per logged step
      summary.json          final figures: steps, wall time, steps/s, end-of-training eval
      events.*              TensorBoard (when installed)
      plots/*.png           one curve per logged metric
      checkpoint-<step>/    policy.pt (what `classic eval` loads) + trainer_state.pt (networks,
                            optimizers, replay buffer, RNG states, step) + envs.pkl (the envs
                            mid-episode and the current observation, when they can be pickled)
      final/                policy.pt + config.yaml of the last step

A checkpoint is written into a hidden temporary folder and renamed into place, so a run killed
mid-write leaves no half checkpoint; `resume=True` continues from the newest complete one. With the
env snapshot, a resumed run logs the same numbers as an uninterrupted one (when checkpoint_every is
a multiple of log_every); an env that cannot be pickled is instead reset with a fresh seed, which
continues the same training but not the same trajectory.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from rewardlab.classic.config import RunConfig, save_config
from rewardlab.classic.envs import UnverifiedSnapshotError, env_snapshot_bytes, load_env_snapshot
from rewardlab.classic.evaluate import evaluate
from rewardlab.classic.policies import Policy

History = list[dict[str, float]]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class Run:
    """One training run: owns the directory, the RNGs, the metrics writers and the checkpoints."""

    def __init__(self, config: RunConfig):
        self.config = config
        self.dir = config.run_dir
        self._check_run_dir()
        self.dir.mkdir(parents=True, exist_ok=True)
        torch.set_num_threads(config.torch_threads)
        seed_everything(config.seed)
        # Exploration noise and action sampling draw from this Generator, so it is checkpointed.
        self.rng = np.random.default_rng(config.seed)
        self.history: History = []
        self.start_step = 0
        self._elapsed_before = 0.0  # wall time of the run's earlier segments, when resumed
        self._start_time = time.perf_counter()
        self._next_log = config.log_every
        self._next_checkpoint = config.checkpoint_every or config.total_steps
        self._last_step = 0  # where the progress bar stands
        self._bar_chunk = max(1, config.total_steps // 500)
        save_config(config, self.dir / "config.yaml")
        self._tensorboard = None
        self._bar = None
        self._env_snapshot: Path | None = None

    def _check_run_dir(self) -> None:
        started = any((self.dir / name).exists() for name in ("metrics.jsonl", "final")) or list_checkpoints(self.dir)
        if started and not self.config.resume:
            raise FileExistsError(
                f"run directory {self.dir} already exists; pass resume=true to continue it, "
                f"or choose another name (--name NAME) or runs_dir"
            )

    # --- resume -------------------------------------------------------------------------------------

    def restore(self, stateful: dict[str, Any]) -> int:
        """Call once before the training loop. When resuming, load the newest complete checkpoint into
        `stateful` (modules, optimizers, buffers: anything with state_dict/load_state_dict) and the
        RNGs. Returns the environment step to continue from (0 for a fresh run)."""
        checkpoint = latest_checkpoint(self.dir) if self.config.resume else None
        if checkpoint is None:
            if self.config.resume and (self.dir / "metrics.jsonl").exists():
                print(f"{self.dir}: no complete checkpoint to resume; starting over from step 0", file=sys.stderr)
                (self.dir / "metrics.jsonl").unlink()  # rows of the lost attempt would repeat steps
            self._open_writers()
            return 0
        state = torch.load(checkpoint / "trainer_state.pt", weights_only=True)
        for key, obj in stateful.items():
            obj.load_state_dict(state["stateful"][key])
        _set_rng_states(state["rng"], self.rng)
        step = int(state["step"])
        self.start_step = self._last_step = step
        self._elapsed_before = float(state["elapsed"])
        self._next_log = (step // self.config.log_every + 1) * self.config.log_every
        if self.config.checkpoint_every:
            self._next_checkpoint = (step // self.config.checkpoint_every + 1) * self.config.checkpoint_every
        self._env_snapshot = checkpoint / "envs.pkl" if (checkpoint / "envs.pkl").exists() else None
        # Rows logged after the checkpoint belong to the lost segment; drop them so steps stay unique.
        metrics_path = self.dir / "metrics.jsonl"
        if metrics_path.exists():
            rows = [json.loads(line) for line in metrics_path.read_text().splitlines() if line.strip()]
            self.history = [row for row in rows if row["step"] <= step]
            metrics_path.write_text("".join(json.dumps(row) + "\n" for row in self.history))
        self._open_writers(purge_step=step + 1)
        print(f"resuming {self.dir} from {checkpoint.name}", file=sys.stderr)
        return step

    def start_env(self, env: Any, step: int) -> tuple[Any, Any]:
        """(env, current observation) to train on: when resuming from a checkpoint that holds an
        environment snapshot, the env(s) exactly as they were, mid-episode, so the resumed run repeats
        the uninterrupted one; otherwise `env` reset with seed `env_seed(step)`."""
        if self._env_snapshot is not None:
            try:
                restored = load_env_snapshot(self._env_snapshot.read_bytes())
            except UnverifiedSnapshotError as error:  # planted, edited, or written on another machine
                print(f"warning: {self._env_snapshot} was not loaded ({error}; unpickling it could run code); "
                      "the environment is reset instead, so this resume is not step-for-step exact", file=sys.stderr)
            else:
                env.close()
                return restored
        obs, _ = env.reset(seed=self.env_seed(step))
        return env, obs

    def env_seed(self, step: int) -> int:
        """Seed for resetting the training envs at `step`: config.seed for a fresh run; a resumed run
        without an env snapshot gets a new seed, so it does not replay the episodes already seen."""
        return self.config.seed + step

    def _open_writers(self, purge_step: int | None = None) -> None:
        self._metrics_file = open(self.dir / "metrics.jsonl", "a")
        if self.config.tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard is optional
                pass
            else:
                self._tensorboard = SummaryWriter(log_dir=str(self.dir), purge_step=purge_step)
        self._bar = tqdm(
            total=self.config.total_steps, initial=self.start_step, unit="step", unit_scale=True,
            disable=not self.config.progress, desc=f"{self.config.algo} {self.config.env_id}", dynamic_ncols=True,
        )

    # --- logging ------------------------------------------------------------------------------------

    def elapsed(self) -> float:
        return self._elapsed_before + time.perf_counter() - self._start_time

    def progress(self, step: int) -> None:
        """Move the progress bar to `step`; cheap enough to call every environment step."""
        if step - self._last_step >= self._bar_chunk or step >= self.config.total_steps:
            if self._bar is not None:
                self._bar.update(step - self._last_step)
            self._last_step = step

    def log_due(self, step: int) -> bool:
        return step >= self._next_log

    def log(self, step: int, metrics: dict[str, float]) -> None:
        """Append one row to metrics.jsonl and TensorBoard. Values must be plain numbers."""
        segment_time = time.perf_counter() - self._start_time
        row = {"step": step, "time": round(self.elapsed(), 3), "sps": round((step - self.start_step) / max(segment_time, 1e-9), 1)}
        # NaN/inf (e.g. explained variance of a constant) would make metrics.jsonl invalid JSON
        row.update({key: float(value) for key, value in metrics.items() if np.isfinite(value)})
        self.history.append(row)
        self._metrics_file.write(json.dumps(row) + "\n")
        self._metrics_file.flush()
        if self._tensorboard is not None:
            for key, value in row.items():
                if key != "step":
                    self._tensorboard.add_scalar(key, value, step)
        if self._bar is not None and "episode_return" in row:
            self._bar.set_postfix(ret=f"{row['episode_return']:.2f}", refresh=False)
        while self._next_log <= step:
            self._next_log += self.config.log_every

    # --- checkpoints --------------------------------------------------------------------------------

    def checkpoint_due(self, step: int) -> bool:
        return self.config.checkpoint_every > 0 and self._next_checkpoint <= step < self.config.total_steps

    def save_checkpoint(self, step: int, policy: Policy, stateful: dict[str, Any], env_state: tuple[Any, Any] | None = None) -> Path:
        """checkpoint-<step>/: policy.pt, trainer_state.pt and, when `env_state` = (env, obs) can be
        pickled, envs.pkl (a pickle signed with this user's key, classic/envs.py: snapshot_key; an unsigned or
        altered one is never unpickled, the env is reset instead)."""
        state = {
            "step": step,
            "elapsed": self.elapsed(),
            "stateful": {key: obj.state_dict() for key, obj in stateful.items()},
            "rng": _rng_states(self.rng),
        }
        env_snapshot = env_snapshot_bytes(*env_state) if env_state is not None else None

        def write(tmp: Path) -> None:
            policy.save(tmp / "policy.pt")
            torch.save(state, tmp / "trainer_state.pt")
            if env_snapshot is not None:
                (tmp / "envs.pkl").write_bytes(env_snapshot)

        target = self.dir / f"checkpoint-{step}"
        _write_atomically(target, write)
        if self.config.checkpoint_every:
            while self._next_checkpoint <= step:
                self._next_checkpoint += self.config.checkpoint_every
        if self.config.keep_checkpoints:
            for old in list_checkpoints(self.dir)[: -self.config.keep_checkpoints]:
                shutil.rmtree(old)
        return target

    # --- the end ------------------------------------------------------------------------------------

    def finish(self, step: int, policy: Policy, stateful: dict[str, Any], env_state: tuple[Any, Any] | None = None) -> tuple[Policy, History]:
        """Last checkpoint, final/, plots, end-of-training eval, summary.json and a printed summary."""
        train_time = self.elapsed()
        self.progress(step)
        if self._bar is not None:
            self._bar.close()
        self.save_checkpoint(step, policy, stateful, env_state)
        _write_atomically(self.dir / "final", lambda tmp: (policy.save(tmp / "policy.pt"), shutil.copy(self.dir / "config.yaml", tmp)))
        summary: dict[str, Any] = {
            "algo": self.config.algo,
            "env_id": self.config.env_id,
            "seed": self.config.seed,
            "steps": step,
            "wall_time_s": round(train_time, 2),
            "steps_per_s": round(step / max(train_time, 1e-9), 1),
        }
        last_returns = [row["episode_return"] for row in self.history if "episode_return" in row]
        if last_returns:
            summary["train_return_last_log"] = last_returns[-1]
        if self.config.eval_episodes:
            # Seeds far above the training ones (seed + env index), so evaluation episodes are new.
            eval_seed = self.config.seed + 1_000_000
            result = evaluate(policy, self.config.env_id, self.config.eval_episodes, eval_seed, self.config.env_kwargs)
            summary.update(result.summary(), eval_seed=eval_seed)
        (self.dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        write_plots(self.history, self.dir / "plots")
        self._metrics_file.close()
        if self._tensorboard is not None:
            self._tensorboard.close()
        if self.config.progress:
            print_summary(self.dir, summary)
        return policy, self.history


class ArrayState:
    """Lets a numpy array (a Q-table) ride in `stateful`; restored in place."""

    def __init__(self, array: np.ndarray):
        self.array = array

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"array": torch.from_numpy(self.array.copy())}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.array[...] = state["array"].numpy()


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoints, oldest first. Temporary folders are hidden (.tmp-*), so never listed."""
    found = []
    for path in Path(run_dir).glob("checkpoint-*"):
        suffix = path.name.removeprefix("checkpoint-")
        if suffix.isdigit() and (path / "trainer_state.pt").exists() and (path / "policy.pt").exists():
            found.append((int(suffix), path))
    return [path for _, path in sorted(found)]


def latest_checkpoint(run_dir: Path) -> Path | None:
    checkpoints = list_checkpoints(run_dir)
    return checkpoints[-1] if checkpoints else None


def policy_path(run_dir: Path) -> Path:
    """final/policy.pt, or the newest checkpoint's policy for a run that did not finish."""
    final = Path(run_dir) / "final" / "policy.pt"
    if final.exists():
        return final
    checkpoint = latest_checkpoint(Path(run_dir))
    if checkpoint is None:
        raise FileNotFoundError(f"{run_dir}: no final/policy.pt and no complete checkpoint-<step>/; is it a classic run directory?")
    return checkpoint / "policy.pt"


def _write_atomically(target: Path, write) -> None:
    tmp = target.parent / f".tmp-{target.name}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    write(tmp)
    if target.exists():
        shutil.rmtree(target)
    os.replace(tmp, target)


def _rng_states(rng: np.random.Generator) -> dict[str, Any]:
    legacy = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy_legacy": [legacy[0], torch.from_numpy(legacy[1].astype(np.int64)), *legacy[2:]],
        "torch": torch.get_rng_state(),
        "generator": rng.bit_generator.state,
    }


def _set_rng_states(states: dict[str, Any], rng: np.random.Generator) -> None:
    python_state = states["python"]
    random.setstate((python_state[0], tuple(python_state[1]), python_state[2]))
    name, keys, *rest = states["numpy_legacy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
    torch.set_rng_state(states["torch"])
    rng.bit_generator.state = states["generator"]


def write_plots(history: History, plots_dir: Path) -> None:
    """One PNG per logged metric against environment steps."""
    if not history:
        return
    import matplotlib

    matplotlib.use("Agg")  # no display on servers; must be chosen before pyplot is imported
    import matplotlib.pyplot as plt

    plots_dir.mkdir(exist_ok=True)
    keys = sorted({key for row in history for key in row} - {"step", "time"})
    for key in keys:
        points = [(row["step"], row[key]) for row in history if key in row]
        fig, ax = plt.subplots(figsize=(6, 3.5))
        ax.plot([p[0] for p in points], [p[1] for p in points])
        ax.set_xlabel("environment steps")
        ax.set_ylabel(key)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(plots_dir / f"{key}.png", dpi=80)
        plt.close(fig)


def print_summary(run_dir: Path, summary: dict[str, Any]) -> None:
    lines = [
        ("run", str(run_dir)),
        ("steps", f"{summary['steps']:,} in {summary['wall_time_s']:.1f} s ({summary['steps_per_s']:,.0f} steps/s)"),
    ]
    if "train_return_last_log" in summary:
        lines.append(("train return", f"{summary['train_return_last_log']:.2f} (last logged window)"))
    if "eval_return_mean" in summary:
        lines.append((
            "eval return",
            f"{summary['eval_return_mean']:.2f} ± {summary['eval_return_std']:.2f} over {summary['eval_episodes']} "
            f"greedy episodes (seeds {summary['eval_seed']}+)",
        ))
    width = max(len(label) for label, _ in lines)
    print("\n".join(f"{label:<{width}}  {text}" for label, text in lines))
