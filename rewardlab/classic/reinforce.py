"""REINFORCE (Williams 1992) with a learned state-value baseline.

Discrete or 1-D Box actions. Each update plays `episodes_per_update` complete episodes with the
current policy on one env, computes Monte-Carlo returns-to-go G_t, and takes one gradient step on

    loss = -mean(log pi(a_t|s_t) * A_t) - ent_coef * entropy + vf_coef * 0.5 * mean((V(s_t) - G_t)^2)

with A_t = G_t - V(s_t), normalised over the batch (ALGORITHMS.md §9). The baseline only reduces
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


def train(config: ReinforceConfig) -> tuple[ActorCriticPolicy, History]:
    env = make_env(config.env_id, config.env_kwargs)
    observations = obs_spec(env.observation_space)
    actions_spec = action_spec(env.action_space, "reinforce", allow_box=True)
    run = Run(config)  # seeds torch before the networks are initialised
    agent = ActorCritic(observations, actions_spec, config.hidden_sizes, config.activation)
    optimizer = torch.optim.Adam(agent.parameters(), lr=config.learning_rate, foreach=True)
    policy = ActorCriticPolicy(agent)
    stateful = {"agent": agent, "optimizer": optimizer}

    step, _ = run.restore(stateful)
    rng = run.rng
    tracker = EpisodeTracker(1)
    env_seed = run.env_seed(step)  # used for the first reset only; the env's RNG carries on from there

    while step < config.total_steps:
        if config.anneal_lr:
            optimizer.param_groups[0]["lr"] = config.learning_rate * (1.0 - step / config.total_steps)

        # 1. play whole episodes; remember where each ended and whether a time limit cut it
        batch_obs, batch_actions, batch_rewards, batch_end = [], [], [], []
        truncated_at: list[tuple[int, np.ndarray]] = []  # (row of the last step, final observation)
        for _episode in range(config.episodes_per_update):
            obs = encode_obs(np.asarray(env.reset(seed=env_seed)[0])[None], observations)
            env_seed = None
            done = False
            while not done:
                action, _, _ = agent.sample(obs, rng, with_value=False)
                next_obs, reward, terminated, truncated, _ = env.step(to_env_actions(action, actions_spec)[0])
                done = terminated or truncated
                batch_obs.append(obs[0])
                batch_actions.append(action[0])
                batch_rewards.append(float(reward))
                batch_end.append(done)
                tracker.add_step(float(reward), done)
                obs = encode_obs(np.asarray(next_obs)[None], observations)
                if truncated and not terminated:
                    truncated_at.append((len(batch_rewards) - 1, obs[0]))
        step += len(batch_rewards)

        # 2. returns-to-go, bootstrapped with V(final state) where a time limit ended the episode
        b_obs = torch.from_numpy(np.stack(batch_obs))
        b_actions = torch.from_numpy(np.stack(batch_actions))
        bootstrap = np.zeros(len(batch_rewards))
        if truncated_at and config.baseline:
            with torch.no_grad():
                final_values = agent.value(torch.from_numpy(np.stack([o for _, o in truncated_at])))
            bootstrap[[row for row, _ in truncated_at]] = final_values.numpy()
        returns = discounted_returns(np.array(batch_rewards)[:, None], np.array(batch_end)[:, None], bootstrap[:, None], config.gamma)[:, 0]
        b_returns = torch.from_numpy(returns).float()

        # 3. one policy-gradient step, plus the baseline's regression
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
            run.save_checkpoint(step, policy, stateful)
        run.progress(step)

    env.close()
    return run.finish(step, policy, stateful)
