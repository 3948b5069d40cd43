"""REINFORCE (Williams 1992) with a learned state-value baseline.

Discrete or 1-D Box actions. Each update plays `episodes_per_update` complete episodes with the
current policy on one env, computes Monte-Carlo returns-to-go G_t, and takes one gradient step on

    loss = -mean(log pi(a_t|s_t) * A_t) - ent_coef * entropy + vf_coef * 0.5 * mean((V(s_t) - G_t)^2)

with A_t = G_t - V(s_t), normalised over the batch (docs/algorithms.md#classic-rl-defaults). The baseline only reduces
variance; the gradient stays unbiased. An episode cut by a time limit is not over: its last return
gets gamma * V(final state) added, so surviving to step 500 of CartPole is not scored like falling.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from rewardlab.classic.config import RunConfig, require
from rewardlab.classic.envs import EpisodeTracker, action_spec, encode_obs, make_env, obs_spec
from rewardlab.classic.networks import ActorCritic, to_env_actions
from rewardlab.classic.policies import ActorCriticPolicy
from rewardlab.classic.returns import discounted_returns
from rewardlab.classic.runs import History, Run


@dataclass
class ReinforceConfig(RunConfig):
    algo = "reinforce"

    episodes_per_update: int = 8
    """Complete episodes collected for each gradient step."""
    learning_rate: float = 1e-3
    """Adam step size."""
    anneal_lr: bool = True
    """Decay the learning rate linearly to 0 over total_steps: the final policy settles instead of jittering."""
    gamma: float = 0.99
    """Discount factor."""
    baseline: bool = True
    """Subtract a learned V(s) from the returns (False: plain REINFORCE, normalised returns only)."""
    norm_adv: bool = True
    """Normalise (G - b) to zero mean, unit std over the batch."""
    ent_coef: float = 0.0
    """Entropy bonus weight."""
    vf_coef: float = 0.5
    """Weight of the baseline's loss 0.5 * (V - G)^2."""
    max_grad_norm: float = 0.5
    """Global gradient-norm clip; 0 = off."""
    hidden_sizes: tuple[int, ...] = (64, 64)
    """Hidden widths of the policy and of the (separate) baseline network."""
    activation: str = "tanh"
    """'tanh' or 'relu'."""

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self, "episodes_per_update", self.episodes_per_update >= 1, "must be >= 1")
        require(self, "learning_rate", self.learning_rate > 0, "must be > 0")
        require(self, "gamma", 0 <= self.gamma <= 1, "must be in [0, 1]")
        require(self, "max_grad_norm", self.max_grad_norm >= 0, "must be >= 0 (0 = off)")
        require(self, "activation", self.activation in ("tanh", "relu"), "must be 'tanh' or 'relu'")


@dataclass
class EpisodeBatch:
    """Complete episodes, concatenated: rows are steps, obs encoded."""

    obs: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    episode_end: np.ndarray  # True on each episode's last step
    truncated_rows: list[int]  # last rows of episodes a time limit cut (not terminated)
    truncated_obs: np.ndarray  # the encoded states those episodes were cut in


def play_episodes(env, agent: ActorCritic, obs, episodes: int, rng: np.random.Generator, tracker: EpisodeTracker):
    """Play `episodes` complete episodes from `obs` with the current policy; returns (batch, next obs)."""
    observations, actions_spec = agent.spec["obs_spec"], agent.spec["action_spec"]
    rows: dict[str, list] = {"obs": [], "actions": [], "rewards": [], "episode_end": []}
    truncated_rows, truncated_obs = [], []
    for _episode in range(episodes):
        done = False
        while not done:
            encoded = encode_obs(np.asarray(obs)[None], observations)
            action, _, _ = agent.sample(encoded, rng, with_value=False)
            obs, reward, terminated, truncated, _ = env.step(to_env_actions(action, actions_spec)[0])
            done = terminated or truncated
            for key, value in (("obs", encoded[0]), ("actions", action[0]), ("rewards", float(reward)), ("episode_end", done)):
                rows[key].append(value)
            tracker.add_step(float(reward), done)
            if truncated and not terminated:
                truncated_rows.append(len(rows["rewards"]) - 1)
                truncated_obs.append(encode_obs(np.asarray(obs)[None], observations)[0])
        obs, _ = env.reset()
    batch = EpisodeBatch(
        np.stack(rows["obs"]), np.stack(rows["actions"]), np.array(rows["rewards"]), np.array(rows["episode_end"]),
        truncated_rows, np.array(truncated_obs, dtype=np.float32).reshape(len(truncated_rows), rows["obs"][0].shape[0]),
    )
    return batch, obs


def returns_to_go(batch: EpisodeBatch, agent: ActorCritic, gamma: float, bootstrap_truncated: bool) -> np.ndarray:
    """G_t per row; an episode cut by a time limit gets gamma * V(state it was cut in) at its end."""
    bootstrap = np.zeros(len(batch.rewards))
    if bootstrap_truncated and batch.truncated_rows:
        with torch.no_grad():
            bootstrap[batch.truncated_rows] = agent.value(torch.from_numpy(batch.truncated_obs)).numpy()
    return discounted_returns(batch.rewards[:, None], batch.episode_end[:, None], bootstrap[:, None], gamma)[:, 0]


def train(config: ReinforceConfig) -> tuple[ActorCriticPolicy, History]:
    env = make_env(config.env_id, config.env_kwargs)
    observations = obs_spec(env.observation_space)
    actions_spec = action_spec(env.action_space, "reinforce", allow_box=True)
    run = Run(config)  # seeds torch before the networks are initialised
    agent = ActorCritic(observations, actions_spec, config.hidden_sizes, config.activation)
    optimizer = torch.optim.Adam(agent.parameters(), lr=config.learning_rate, fused=True)
    policy = ActorCriticPolicy(agent)
    tracker = EpisodeTracker(1)
    stateful = {"agent": agent, "optimizer": optimizer, "episodes": tracker}

    step = run.restore(stateful)
    env, obs = run.start_env(env, step)
    rng = run.rng

    while step < config.total_steps:
        if config.anneal_lr:
            optimizer.param_groups[0]["lr"] = config.learning_rate * (1.0 - step / config.total_steps)

        # 1. whole episodes with the current policy, and their returns-to-go
        batch, obs = play_episodes(env, agent, obs, config.episodes_per_update, rng, tracker)
        step += len(batch.rewards)
        b_returns = torch.from_numpy(returns_to_go(batch, agent, config.gamma, config.baseline)).float()
        b_obs, b_actions = torch.from_numpy(batch.obs), torch.from_numpy(batch.actions)

        # 2. one policy-gradient step, plus the baseline's regression
        log_probs, entropy = agent.log_prob_entropy(b_obs, b_actions)
        values = agent.value(b_obs) if config.baseline else torch.zeros_like(b_returns)
        advantages = b_returns - values.detach()
        if config.norm_adv:
            advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
        policy_loss = -(log_probs * advantages).mean()
        value_loss = 0.5 * (values - b_returns).pow(2).mean()
        entropy_mean = entropy.mean()
        loss = policy_loss - config.ent_coef * entropy_mean + config.vf_coef * value_loss
        optimizer.zero_grad()
        loss.backward()
        if config.max_grad_norm > 0:
            nn.utils.clip_grad_norm_(agent.parameters(), config.max_grad_norm)
        optimizer.step()

        if run.log_due(step):
            learning = {"policy_loss": policy_loss.item(), "entropy": entropy_mean.item(), "learning_rate": optimizer.param_groups[0]["lr"]}
            if config.baseline:
                learning["value_loss"] = value_loss.item()
            run.log(step, {**tracker.pop_finished(), **learning})
        if run.checkpoint_due(step):
            run.save_checkpoint(step, policy, stateful, (env, obs))
        run.progress(step)

    env.close()
    return run.finish(step, policy, stateful, (env, obs))
