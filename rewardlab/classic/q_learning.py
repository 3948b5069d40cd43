"""Tabular Q-learning (Watkins 1989) with epsilon-greedy exploration.

Needs Discrete observation and action spaces (FrozenLake, Taxi, CliffWalking, ...). One env, one
update per step:

    Q(s, a) += alpha * (r + gamma * (1 - terminated) * max_a' Q(s', a') - Q(s, a))

A time-limit truncation still bootstraps from Q(s'): the state has value, the clock just ran out.
"""

from __future__ import annotations

from dataclasses import dataclass

import gymnasium as gym
import numpy as np

from rewardlab.classic.config import RunConfig, require
from rewardlab.classic.envs import EpisodeTracker, make_env
from rewardlab.classic.policies import TabularPolicy
from rewardlab.classic.runs import ArrayState, History, Run
from rewardlab.classic.schedules import linear_schedule


@dataclass
class QLearningConfig(RunConfig):
    algo = "q_learning"

    env_id: str = "FrozenLake-v1"
    total_steps: int = 500_000
    learning_rate: float = 0.1
    """alpha: step size of the tabular update."""
    learning_rate_end: float | None = 0.01
    """alpha decays linearly to this over the run; None keeps it constant. With a constant 0.1 the
    Q-values of a slippery FrozenLake keep jittering and the greedy policy can flip to a worse one."""
    gamma: float = 0.99
    """Discount factor."""
    epsilon_start: float = 1.0
    """Probability of a random action at step 0."""
    epsilon_end: float = 0.05
    """Probability of a random action after the decay."""
    exploration_fraction: float = 0.5
    """Fraction of total_steps over which epsilon decays linearly from start to end."""

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self, "learning_rate", 0 < self.learning_rate <= 1, "must be in (0, 1]")
        if self.learning_rate_end is not None:
            require(self, "learning_rate_end", 0 <= self.learning_rate_end <= self.learning_rate, "must be in [0, learning_rate]")
        require(self, "gamma", 0 <= self.gamma <= 1, "must be in [0, 1]")
        for name in ("epsilon_start", "epsilon_end", "exploration_fraction"):
            require(self, name, 0 <= getattr(self, name) <= 1, "must be in [0, 1]")


def q_learning_update(
    q_table: np.ndarray, state: int, action: int, reward: float, next_state: int, terminated: bool, learning_rate: float, gamma: float
) -> float:
    """One in-place tabular Q-learning update; returns the TD error before the update."""
    bootstrap = 0.0 if terminated else gamma * q_table[next_state].max()
    td_error = reward + bootstrap - q_table[state, action]
    q_table[state, action] += learning_rate * td_error
    return float(td_error)


def train(config: QLearningConfig) -> tuple[TabularPolicy, History]:
    env = make_env(config.env_id, config.env_kwargs)
    obs_space, action_space = env.observation_space, env.action_space
    if not (isinstance(obs_space, gym.spaces.Discrete) and isinstance(action_space, gym.spaces.Discrete)):
        raise ValueError(
            f"q_learning needs Discrete observation and action spaces; {config.env_id} has {obs_space} and "
            f"{action_space}. Use dqn (or ppo) for continuous observations."
        )
    obs_start, action_start = int(obs_space.start), int(action_space.start)
    q_table = np.zeros((int(obs_space.n), int(action_space.n)))
    policy = TabularPolicy(q_table, obs_start, action_start)

    tracker = EpisodeTracker(1)
    stateful = {"q_table": ArrayState(q_table), "episodes": tracker}

    run = Run(config)
    step = run.restore(stateful)
    env, obs = run.start_env(env, step)
    rng = run.rng
    td_errors: list[float] = []

    while step < config.total_steps:
        state = int(obs) - obs_start
        epsilon = linear_schedule(config.epsilon_start, config.epsilon_end, int(config.exploration_fraction * config.total_steps), step)
        if rng.random() < epsilon:
            action = int(rng.integers(q_table.shape[1]))
        else:  # greedy, ties broken at random so an all-zero row does not always pick action 0
            row = q_table[state]
            action = int(rng.choice(np.flatnonzero(row == row.max())))
        next_obs, reward, terminated, truncated, _ = env.step(action + action_start)

        learning_rate = config.learning_rate
        if config.learning_rate_end is not None:
            learning_rate = linear_schedule(config.learning_rate, config.learning_rate_end, config.total_steps, step)
        td_errors.append(q_learning_update(q_table, state, action, float(reward), int(next_obs) - obs_start, terminated,
                                           learning_rate, config.gamma))

        step += 1
        episode_over = terminated or truncated
        tracker.add_step(float(reward), episode_over)
        obs = env.reset()[0] if episode_over else next_obs

        if run.log_due(step):
            run.log(step, {**tracker.pop_finished(), "td_error_abs": np.abs(td_errors).mean(),
                           "epsilon": epsilon, "learning_rate": learning_rate})
            td_errors.clear()
        if run.checkpoint_due(step):
            run.save_checkpoint(step, policy, stateful, (env, obs))
        run.progress(step)

    env.close()
    return run.finish(step, policy, stateful, (env, obs))
