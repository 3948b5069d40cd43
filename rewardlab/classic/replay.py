"""A fixed-size circular replay buffer of (obs, action, reward, next_obs, terminated) for DQN and SAC."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


class ReplayBuffer:
    """Stores encoded float32 observations. When full, the oldest transition is overwritten.

    `next_obs` is the state the env actually reached (the final observation when an episode ended), and
    only `terminated` (not truncated) zeroes the bootstrap: a time limit is not a terminal state.

    Actions are int64 indices by default (DQN); `action_dim=d` stores float32 vectors of length d
    instead (SAC's Box actions).
    """

    def __init__(self, capacity: int, obs_dim: int, action_dim: int | None = None):
        self.capacity = capacity
        self.obs = np.zeros((capacity, obs_dim), dtype=np.float32)
        self.next_obs = np.zeros((capacity, obs_dim), dtype=np.float32)
        if action_dim is None:
            self.actions = np.zeros(capacity, dtype=np.int64)
        else:
            self.actions = np.zeros((capacity, action_dim), dtype=np.float32)
        self.rewards = np.zeros(capacity, dtype=np.float32)
        self.terminated = np.zeros(capacity, dtype=np.float32)
        self.position = 0  # next slot to write
        self.size = 0

    def add(self, obs: np.ndarray, action: int | np.ndarray, reward: float, next_obs: np.ndarray, terminated: bool) -> None:
        slot = self.position
        self.obs[slot] = obs
        self.next_obs[slot] = next_obs
        self.actions[slot] = action
        self.rewards[slot] = reward
        self.terminated[slot] = terminated
        self.position = (slot + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def sample(self, batch_size: int, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        """Uniform with replacement over the filled slots."""
        if self.size == 0:
            raise ValueError("cannot sample from an empty replay buffer")
        index = rng.integers(0, self.size, size=batch_size)
        return {
            "obs": torch.from_numpy(self.obs[index]),
            "actions": torch.from_numpy(self.actions[index]),
            "rewards": torch.from_numpy(self.rewards[index]),
            "next_obs": torch.from_numpy(self.next_obs[index]),
            "terminated": torch.from_numpy(self.terminated[index]),
        }

    def state_dict(self) -> dict[str, Any]:
        arrays = {name: torch.from_numpy(getattr(self, name)[: self.size].copy()) for name in ("obs", "next_obs", "actions", "rewards", "terminated")}
        return {"capacity": self.capacity, "position": self.position, "size": self.size, **arrays}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["capacity"] != self.capacity:
            raise ValueError(f"checkpoint replay buffer holds {state['capacity']} transitions, config asks for {self.capacity}")
        self.position, self.size = state["position"], state["size"]
        for name in ("obs", "next_obs", "actions", "rewards", "terminated"):
            getattr(self, name)[: self.size] = state[name].numpy()
