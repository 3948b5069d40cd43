"""Tiny deterministic environments whose returns can be worked out by hand."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest


class ChainEnv(gym.Env):
    """Positions 0, 1, ..., length. Every action moves one step right and pays position + 1 (so the
    rewards are 1, 2, 3, ...); reaching `length` terminates. The observation is the position as a
    float Box (or a Discrete index with discrete_obs=True)."""

    def __init__(self, length: int = 3, discrete_obs: bool = False):
        self.length = length
        self.discrete_obs = discrete_obs
        self.observation_space = (
            gym.spaces.Discrete(length + 1) if discrete_obs else gym.spaces.Box(0.0, float(length), (1,), np.float32)
        )
        self.action_space = gym.spaces.Discrete(2)

    def _obs(self):
        return self.position if self.discrete_obs else np.array([self.position], dtype=np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.position = 0
        return self._obs(), {}

    def step(self, action):
        reward = float(self.position + 1)
        self.position += 1
        return self._obs(), reward, self.position >= self.length, False, {}


class LoopEnv(gym.Env):
    """One state, one action, reward 1, never terminates: only a time limit ends an episode. With
    bootstrapping on truncation Q converges to 1 / (1 - gamma); treating the cut as terminal would
    pull it toward the finite-horizon sums instead."""

    observation_space = gym.spaces.Discrete(1)
    action_space = gym.spaces.Discrete(1)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return 0, {}

    def step(self, action):
        return 0, 1.0, False, False, {}


for env_id, entry_point in [("rewardlab_test/Chain-v0", ChainEnv), ("rewardlab_test/Loop-v0", LoopEnv)]:
    if env_id not in gym.registry:
        gym.register(env_id, entry_point=entry_point)


@pytest.fixture
def quiet(tmp_path):
    """Run fields for fast test runs: a temporary runs_dir, no progress bar, no TensorBoard, no eval."""
    return {"runs_dir": str(tmp_path / "runs"), "progress": False, "tensorboard": False, "eval_episodes": 0}
