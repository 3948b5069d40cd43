"""On-policy rollout collection shared by A2C and PPO: step N envs for T steps with the current policy."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from gymnasium.vector import VectorEnv

from rewardlab.classic.envs import EpisodeTracker, encode_obs, final_observations
from rewardlab.classic.networks import ActorCritic, to_env_actions


@dataclass
class Rollout:
    """Arrays are [T, N] (time-major), obs [T, N, obs_dim] encoded, Box actions [T, N, act_dim]."""

    obs: np.ndarray
    actions: np.ndarray
    log_probs: np.ndarray  # under the policy that sampled (PPO's "old" log-probs)
    values: np.ndarray  # V(obs_t)
    rewards: np.ndarray
    terminated: np.ndarray
    episode_end: np.ndarray  # terminated or truncated
    next_values: np.ndarray  # V(state reached after step t): V(final_obs) on truncation, 0 on termination
    last_obs: np.ndarray  # raw observations to start the next rollout from


def collect_rollout(
    envs: VectorEnv, agent: ActorCritic, obs: np.ndarray, num_steps: int, rng: np.random.Generator, tracker: EpisodeTracker
) -> Rollout:
    obs_spec, action_spec = agent.spec["obs_spec"], agent.spec["action_spec"]
    num_envs = envs.num_envs
    encoded_obs = np.zeros((num_steps, num_envs, *encode_obs(obs, obs_spec).shape[1:]), dtype=np.float32)
    action_shape = () if agent.discrete else (action_spec["dim"],)
    actions = np.zeros((num_steps, num_envs, *action_shape), dtype=np.int64 if agent.discrete else np.float32)
    log_probs, values, rewards = (np.zeros((num_steps, num_envs)) for _ in range(3))
    terminated, episode_end = (np.zeros((num_steps, num_envs), dtype=bool) for _ in range(2))
    truncated_values = np.full((num_steps, num_envs), np.nan)  # V(final_obs) where a time limit cut in

    for t in range(num_steps):
        encoded_obs[t] = encode_obs(obs, obs_spec)
        actions[t], log_probs[t], values[t] = agent.sample(encoded_obs[t], rng)
        obs, rewards[t], terminated[t], truncated, info = envs.step(to_env_actions(actions[t], action_spec))
        episode_end[t] = terminated[t] | truncated
        cut = truncated & ~terminated[t]
        if cut.any():  # rare (once per episode at most), so one extra forward pass is cheap
            reached = final_observations(obs, cut, info)[cut]
            with torch.inference_mode():
                truncated_values[t, cut] = agent.value(torch.from_numpy(encode_obs(reached, obs_spec))).numpy()
        tracker.update(rewards[t], episode_end[t])

    # Within an episode the state reached after step t is the one acted in at t + 1.
    with torch.inference_mode():
        last_values = agent.value(torch.from_numpy(encode_obs(obs, obs_spec))).numpy()
    next_values = np.concatenate([values[1:], last_values[None]])
    next_values = np.where(np.isnan(truncated_values), next_values, truncated_values)
    next_values[terminated] = 0.0
    return Rollout(encoded_obs, actions, log_probs, values, rewards, terminated, episode_end, next_values, obs)
