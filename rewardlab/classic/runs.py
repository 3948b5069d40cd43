"""The run directory every classic algorithm writes (layout below; docs/architecture.md#run-directories), and resume.

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

The directory, its lock and its checkpoints are rewardlab/runs.py's, as for the language-model
trainers: a second run on a directory in use fails at once; an earlier run in it is an error unless
`resume=True` continues it or `overwrite=True` deletes it; a checkpoint is written into a hidden
temporary folder and renamed into place, so a run killed mid-write leaves no half checkpoint; a resume
takes the newest checkpoint that loads, naming and skipping a damaged one. With the env snapshot, a
resumed run logs the same numbers as an uninterrupted one (when checkpoint_every is a multiple of
log_every); an env that cannot be pickled is instead reset with a fresh seed, which continues the same
training but not the same trajectory.
"""

from __future__ import annotations

import json
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
from rewardlab.monitor.plots import plot_run
from rewardlab.runs import (
    STATE_FILE,
    Wording,
    atomic_dir,
    claim_run_dir,
    list_checkpoints,
    load_newest_intact,
    load_state,
    release_run_dir,
    restore_rng_state,
    rng_state,
    set_seed,
    write_checkpoint,
)

History = list[dict[str, float]]
# the words of `rewardlab classic` in the run directory's error messages
WORDING = Wording(resume="resume=true", overwrite="overwrite=true", new_name="name=...", new_parent="runs_dir=...")
STATE_KEYS = ("step", "elapsed", "stateful", "rng")


class Run:
    """One training run: owns the directory, the RNGs, the metrics writers and the checkpoints."""

    def __init__(self, config: RunConfig):
        self.config = config
        self.dir = config.run_dir
        claim_run_dir(self.dir, config.resume, config.overwrite, WORDING)
        torch.set_num_threads(config.torch_threads)
        set_seed(config.seed)
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

    # --- resume -------------------------------------------------------------------------------------

    def restore(self, stateful: dict[str, Any]) -> int:
        """Call once before the training loop. When resuming, load the newest intact checkpoint into
        `stateful` (modules, optimizers, buffers: anything with state_dict/load_state_dict) and the
        RNGs. Returns the environment step to continue from (0 for a fresh run)."""
        found = None
        if self.config.resume:
            found = load_newest_intact(self.dir, list_checkpoints(self.dir), read_trainer_state, WORDING)
        if found is None:
            if self.config.resume and (self.dir / "metrics.jsonl").exists():
                print(f"{self.dir}: no complete checkpoint to resume; starting over from step 0", file=sys.stderr)
                (self.dir / "metrics.jsonl").unlink()  # rows of the lost attempt would repeat steps
            self._open_writers()
            return 0
        checkpoint, state = found
        for key, obj in stateful.items():
            obj.load_state_dict(state["stateful"][key])
        restore_rng_state(state["rng"])
        self.rng.bit_generator.state = state["rng"]["generator"]
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
            "rng": {**rng_state(), "generator": self.rng.bit_generator.state},
        }
        env_snapshot = env_snapshot_bytes(*env_state) if env_state is not None else None

        def write(tmp: Path) -> None:
            policy.save(tmp / "policy.pt")
            torch.save(state, tmp / STATE_FILE)
            if env_snapshot is not None:
                (tmp / "envs.pkl").write_bytes(env_snapshot)

        target = write_checkpoint(self.dir, step, write, self.config.keep_checkpoints)
        if self.config.checkpoint_every:
            while self._next_checkpoint <= step:
                self._next_checkpoint += self.config.checkpoint_every
        return target

    # --- the end ------------------------------------------------------------------------------------

    def finish(self, step: int, policy: Policy, stateful: dict[str, Any], env_state: tuple[Any, Any] | None = None) -> tuple[Policy, History]:
        """Last checkpoint, final/, plots, end-of-training eval, summary.json and a printed summary; then
        the run directory is unlocked."""
        train_time = self.elapsed()
        self.progress(step)
        if self._bar is not None:
            self._bar.close()
        self.save_checkpoint(step, policy, stateful, env_state)
        atomic_dir(self.dir / "final", lambda tmp: (policy.save(tmp / "policy.pt"), shutil.copy(self.dir / "config.yaml", tmp)))
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
        self._metrics_file.close()
        # groups={}: a <metric>.png of its own for each, not the language-model trainers' combined plots
        plot_run(self.dir, keys=sorted({key for row in self.history for key in row} - {"step", "time"}), groups={})
        if self._tensorboard is not None:
            self._tensorboard.close()
        release_run_dir(self.dir)
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


def read_trainer_state(checkpoint: Path) -> dict[str, Any]:
    """checkpoint/trainer_state.pt, weights-only; a damaged one raises CorruptCheckpointError (runs.py)."""
    return load_state(checkpoint / STATE_FILE, STATE_KEYS, "rewardlab classic trainer state")


def policy_path(run_dir: Path) -> Path:
    """final/policy.pt, or the newest checkpoint's policy for a run that did not finish."""
    final = Path(run_dir) / "final" / "policy.pt"
    if final.exists():
        return final
    checkpoints = list_checkpoints(Path(run_dir))
    if not checkpoints:
        raise FileNotFoundError(f"{run_dir}: no final/policy.pt and no complete checkpoint-<step>/; is it a classic run directory?")
    return checkpoints[-1] / "policy.pt"


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
