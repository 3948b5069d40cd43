"""Score a policy: N episodes, episode i reset with seed `seed + i`, so a (policy, seed) pair always
gives the same numbers and a seed range disjoint from training's gives episodes it never saw."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from rewardlab.classic.envs import make_env
from rewardlab.classic.policies import Policy


@dataclass
class EvalResult:
    returns: list[float]
    lengths: list[int]

    @property
    def mean(self) -> float:
        return float(np.mean(self.returns))

    @property
    def std(self) -> float:
        return float(np.std(self.returns))

    def summary(self) -> dict[str, float]:
        return {
            "eval_return_mean": self.mean,
            "eval_return_std": self.std,
            "eval_return_min": float(np.min(self.returns)),
            "eval_return_max": float(np.max(self.returns)),
            "eval_length_mean": float(np.mean(self.lengths)),
            "eval_episodes": len(self.returns),
        }


def evaluate(
    policy: Policy,
    env_id: str,
    episodes: int,
    seed: int,
    env_kwargs: dict[str, Any] | None = None,
    deterministic: bool = True,
) -> EvalResult:
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    env = make_env(env_id, env_kwargs)
    returns: list[float] = []
    lengths: list[int] = []
    try:
        for episode in range(episodes):
            obs, _ = env.reset(seed=seed + episode)
            total, length, done = 0.0, 0, False
            while not done:
                obs, reward, terminated, truncated, _ = env.step(policy.act(obs, deterministic=deterministic))
                total += float(reward)
                length += 1
                done = terminated or truncated
            returns.append(total)
            lengths.append(length)
    finally:
        env.close()
    return EvalResult(returns, lengths)
