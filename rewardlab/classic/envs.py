"""Environment construction, observation encoding and episode bookkeeping shared by the algorithms.

Vectorised envs use Gymnasium 1.x's SAME_STEP autoreset: when an episode ends, `step` returns the
first observation of the next episode and puts the true last observation in
`info["final_obs"][i]`. That is what bootstrapping on truncation needs: V(final_obs), not V(reset obs).
(The Gymnasium 1.x default, NEXT_STEP, instead spends one extra `step` call on the reset and
returns a dummy transition that every algorithm would have to skip.)
"""

from __future__ import annotations

import hashlib
import hmac
import os
import pickle
import secrets
import warnings
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode, SyncVectorEnv


def make_env(env_id: str, env_kwargs: dict[str, Any] | None = None, **make_kwargs: Any) -> gym.Env:
    if env_id.startswith("rewardlab/"):
        import rewardlab.classic.market  # noqa: F401
        import rewardlab.envs  # noqa: F401  (registers the text environments and their tabular views)
    try:
        return gym.make(env_id, **(env_kwargs or {}), **make_kwargs)
    except gym.error.Error as error:  # unknown id, wrong version, missing extra
        raise ValueError(f"cannot make Gymnasium env {env_id!r}: {error}") from error
    except TypeError as error:  # an env_kwargs key the environment does not take
        raise ValueError(f"env_kwargs {env_kwargs} do not fit {env_id!r}: {error}") from None


def make_vec_env(env_id: str, num_envs: int, env_kwargs: dict[str, Any] | None = None) -> SyncVectorEnv:
    """`num_envs` copies in one process. Seed them through `reset(seed=s)`: env i gets seed s + i."""
    return SyncVectorEnv(
        [lambda: make_env(env_id, env_kwargs) for _ in range(num_envs)],
        autoreset_mode=AutoresetMode.SAME_STEP,
        copy=True,  # obs buffers are reused between steps otherwise; the copy costs ~2 us
    )


SNAPSHOT_MAGIC = b"rewardlab-envs-v1\n"


class UnverifiedSnapshotError(ValueError):
    """An environment snapshot this machine's key did not sign: it is not unpickled."""


def snapshot_key() -> bytes:
    """This user's secret for signing environment snapshots: 32 random bytes in
    $REWARDLAB_KEY_DIR (default ~/.config/rewardlab)/snapshot.key, created on first use, readable by the
    user only. A snapshot signed with it was written by this user's runs; nothing else is unpickled."""
    folder = Path(os.environ.get("REWARDLAB_KEY_DIR") or Path.home() / ".config" / "rewardlab")
    path = folder / "snapshot.key"
    if not path.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(secrets.token_bytes(32))
    return path.read_bytes()


def env_snapshot_bytes(env: gym.Env | SyncVectorEnv, obs: Any) -> bytes | None:
    """Pickle of the env(s) (dynamics state, RNG, time-limit counter) and the current observation, signed
    with snapshot_key(); None with a warning where the env cannot be pickled (resume then resets it)."""
    target = list(env.envs) if isinstance(env, SyncVectorEnv) else env
    try:
        payload = pickle.dumps((target, obs))
    except Exception as error:  # anything from a lambda in a wrapper to a C handle
        warnings.warn(f"environment cannot be pickled ({error}); a resumed run will reset it instead", stacklevel=2)
        return None
    return SNAPSHOT_MAGIC + hmac.new(snapshot_key(), payload, hashlib.sha256).digest() + payload


def load_env_snapshot(data: bytes) -> tuple[gym.Env | SyncVectorEnv, Any]:
    """The env(s) and observation of a snapshot, unpickled only when its signature checks out with this
    user's key; otherwise UnverifiedSnapshotError (the file may be planted or from another machine)."""
    head, digest, payload = data[: len(SNAPSHOT_MAGIC)], data[len(SNAPSHOT_MAGIC): len(SNAPSHOT_MAGIC) + 32], data[len(SNAPSHOT_MAGIC) + 32:]
    expected = hmac.new(snapshot_key(), payload, hashlib.sha256).digest()
    if head != SNAPSHOT_MAGIC or not hmac.compare_digest(digest, expected):
        raise UnverifiedSnapshotError("not signed with this user's snapshot key")
    target, obs = pickle.loads(payload)
    if isinstance(target, list):  # a vector env's sub-envs: rebuild the wrapper around them as they are
        envs = SyncVectorEnv([lambda env=env: env for env in target], autoreset_mode=AutoresetMode.SAME_STEP, copy=True)
        return envs, obs
    return target, obs


def final_observations(next_obs: np.ndarray, episode_end: np.ndarray, info: dict[str, Any]) -> np.ndarray:
    """The observation each env actually reached this step: `info["final_obs"]` where an episode ended."""
    if not episode_end.any():
        return next_obs
    reached = np.array(next_obs, copy=True)
    for i in np.flatnonzero(episode_end):
        reached[i] = info["final_obs"][i]
    return reached


# --- observations -> network inputs -------------------------------------------------------------------


def obs_spec(space: gym.Space) -> dict[str, Any]:
    """How to feed an observation space to an MLP: Box is flattened, Discrete becomes one-hot."""
    if isinstance(space, gym.spaces.Discrete):
        return {"kind": "discrete", "n": int(space.n), "start": int(space.start)}
    if isinstance(space, gym.spaces.Box):
        return {"kind": "box", "dim": int(np.prod(space.shape))}
    raise ValueError(
        f"observation space {space} is not supported by the neural-network algorithms "
        "(Box and Discrete are); wrap the env with gymnasium.wrappers.FlattenObservation first"
    )


def obs_dim(spec: dict[str, Any]) -> int:
    return spec["n"] if spec["kind"] == "discrete" else spec["dim"]


def encode_obs(obs: np.ndarray, spec: dict[str, Any]) -> np.ndarray:
    """A batch of raw observations [B, ...] -> float32 [B, obs_dim]."""
    if spec["kind"] == "discrete":
        index = np.asarray(obs, dtype=np.int64).reshape(-1) - spec["start"]
        one_hot = np.zeros((index.shape[0], spec["n"]), dtype=np.float32)
        one_hot[np.arange(index.shape[0]), index] = 1.0
        return one_hot
    return np.asarray(obs, dtype=np.float32).reshape(len(obs), -1)


def action_spec(space: gym.Space, algo: str, allow_box: bool) -> dict[str, Any]:
    if isinstance(space, gym.spaces.Discrete):
        return {"kind": "discrete", "n": int(space.n), "start": int(space.start)}
    if allow_box and isinstance(space, gym.spaces.Box) and len(space.shape) == 1:
        return {"kind": "box", "dim": int(space.shape[0]), "low": space.low.tolist(), "high": space.high.tolist()}
    supported = "Discrete or 1-D Box" if allow_box else "Discrete"
    raise ValueError(f"{algo} needs a {supported} action space; this env has {space}")


# --- episode statistics ---------------------------------------------------------------------------------


class EpisodeTracker:
    """Running return and length per env; finished episodes wait in a list until `pop_finished`."""

    def __init__(self, num_envs: int):
        self.returns = np.zeros(num_envs, dtype=np.float64)
        self.lengths = np.zeros(num_envs, dtype=np.int64)
        self.finished_returns: list[float] = []
        self.finished_lengths: list[int] = []
        self.episodes = 0

    def update(self, rewards: np.ndarray, episode_end: np.ndarray) -> None:
        self.returns += rewards
        self.lengths += 1
        if episode_end.any():
            for i in np.flatnonzero(episode_end):
                self.finished_returns.append(float(self.returns[i]))
                self.finished_lengths.append(int(self.lengths[i]))
                self.returns[i] = 0.0
                self.lengths[i] = 0
                self.episodes += 1

    def add_step(self, reward: float, episode_over: bool) -> None:
        """`update` for a single env, without the array overhead (a few us per step adds up)."""
        self.returns[0] += reward
        self.lengths[0] += 1
        if episode_over:
            self.finished_returns.append(float(self.returns[0]))
            self.finished_lengths.append(int(self.lengths[0]))
            self.returns[0] = 0.0
            self.lengths[0] = 0
            self.episodes += 1

    def state_dict(self) -> dict[str, Any]:
        return {"returns": self.returns.tolist(), "lengths": self.lengths.tolist(), "episodes": self.episodes,
                "finished_returns": list(self.finished_returns), "finished_lengths": list(self.finished_lengths)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.returns[:] = state["returns"]
        self.lengths[:] = state["lengths"]
        self.episodes = state["episodes"]
        self.finished_returns = list(state["finished_returns"])
        self.finished_lengths = list(state["finished_lengths"])

    def pop_finished(self) -> dict[str, float]:
        """Mean return/length of the episodes that ended since the last call ({} if none did)."""
        if not self.finished_returns:
            return {}
        stats = {
            "episode_return": float(np.mean(self.finished_returns)),
            "episode_length": float(np.mean(self.finished_lengths)),
        }
        self.finished_returns.clear()
        self.finished_lengths.clear()
        return stats
