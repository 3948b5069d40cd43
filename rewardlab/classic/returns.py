"""Return and advantage estimators over [T, N] arrays (time-major, one column per parallel env).

The two flags every estimator needs, and why they differ:
  terminated[t]   the MDP ended at step t: the value after it is 0, nothing to bootstrap.
  episode_end[t]  terminated OR truncated (time limit): the next row belongs to a new episode, so
                  the recursion must not carry across it; but a truncated step still bootstraps from
                  the value of the state it actually reached (`next_values[t]`, computed from
                  info["final_obs"]).
Treating truncation as termination teaches a CartPole agent that standing up at step 500 is worth 0.
"""

from __future__ import annotations

import numpy as np


def gae(
    rewards: np.ndarray,
    values: np.ndarray,
    next_values: np.ndarray,
    terminated: np.ndarray,
    episode_end: np.ndarray,
    gamma: float,
    lam: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Generalised advantage estimation (Schulman et al. 2016). Returns (advantages, returns).

    delta_t = r_t + gamma * (1 - terminated_t) * V(s_{t+1}) - V(s_t)
    A_t     = delta_t + gamma * lam * (1 - episode_end_t) * A_{t+1}
    returns = A + V, the critic's regression target. lam = 1 gives n-step returns bootstrapped at the
    rollout end (A2C); lam = 0 gives one-step TD targets.
    """
    not_terminated = 1.0 - terminated.astype(np.float64)
    continues = 1.0 - episode_end.astype(np.float64)
    deltas = rewards + gamma * not_terminated * next_values - values
    advantages = np.zeros_like(deltas)
    running = np.zeros(deltas.shape[1:])
    for t in reversed(range(len(deltas))):
        running = deltas[t] + gamma * lam * continues[t] * running
        advantages[t] = running
    return advantages, advantages + values


def discounted_returns(rewards: np.ndarray, episode_end: np.ndarray, bootstrap: np.ndarray, gamma: float) -> np.ndarray:
    """Monte-Carlo returns-to-go G_t = r_t + gamma * G_{t+1} within each episode (REINFORCE).

    `bootstrap[t]` is added as gamma * bootstrap[t] at an episode's last step: V(final_obs) where the
    episode was truncated by a time limit, 0 where it terminated.
    """
    returns = np.zeros_like(rewards, dtype=np.float64)
    running = np.zeros(rewards.shape[1:])
    for t in reversed(range(len(rewards))):
        running = np.where(episode_end[t], gamma * bootstrap[t], gamma * running) + rewards[t]
        returns[t] = running
    return returns


def explained_variance(predicted: np.ndarray, target: np.ndarray) -> float:
    """1 - Var(target - predicted) / Var(target): 1 is a perfect critic, <= 0 no better than a constant."""
    variance = np.var(target)
    return float("nan") if variance == 0 else float(1 - np.var(target - predicted) / variance)
