"""Advantage Actor-Critic: synchronous, single-update A3C (Mnih et al. 2016).

Discrete or 1-D Box actions. Defaults are Stable-Baselines3's A2C (docs/algorithms.md#classic-rl-defaults), with 8 envs as
in the RL Zoo's CartPole setting. Each update: run `num_envs` envs for `num_steps` (5) steps, take
n-step returns bootstrapped from the critic (GAE with lambda = 1; truncation bootstraps, termination
does not), and make ONE gradient step on

    loss = -mean(log pi(a|s) * A) - ent_coef * entropy + vf_coef * mean((V(s) - return)^2)

Unlike PPO there are no epochs and no ratio: the batch is used once, right after it was collected.
The risk-sensitive options are PPO's (mv_coef, cvar_coef, lagrange_limit, ...; rewardlab/classic/risk.py),
on the same rollout-and-GAE path; all off by default.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from rewardlab.classic.config import RunConfig, require
from rewardlab.classic.envs import EpisodeTracker, action_spec, make_vec_env, obs_spec
from rewardlab.classic.networks import ActorCritic
from rewardlab.classic.policies import ActorCriticPolicy
from rewardlab.classic.returns import explained_variance, gae
from rewardlab.classic.risk import RiskOptions, RolloutRisk, check_options
from rewardlab.classic.rollouts import collect_rollout
from rewardlab.classic.runs import History, Run


@dataclass
class A2CConfig(RiskOptions, RunConfig):
    algo = "a2c"

    num_envs: int = 8
    """Parallel environments (gymnasium SyncVectorEnv)."""
    num_steps: int = 5
    """Steps per env per update (the n of the n-step return)."""
    learning_rate: float = 7e-4
    """RMSprop step size (alpha 0.99, eps 1e-5, as SB3)."""
    anneal_lr: bool = False
    """Decay the learning rate linearly to 0 over total_steps."""
    gamma: float = 0.99
    """Discount factor."""
    gae_lambda: float = 1.0
    """1.0 = plain n-step returns (classic A2C); < 1 mixes in shorter returns (GAE)."""
    norm_adv: bool = False
    """Normalise advantages within each batch (off in SB3's A2C)."""
    ent_coef: float = 0.0
    """Entropy bonus weight."""
    vf_coef: float = 0.5
    """Weight of the value loss (V - return)^2 (SB3 convention: no 1/2 factor)."""
    max_grad_norm: float = 0.5
    """Global gradient-norm clip."""
    optimizer: str = "rmsprop"
    """'rmsprop' (SB3, the A3C paper) or 'adam'."""
    hidden_sizes: tuple[int, ...] = (64, 64)
    """Hidden widths of the actor and of the (separate) critic."""
    activation: str = "tanh"
    """'tanh' or 'relu'."""

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("num_envs", "num_steps"):
            require(self, name, getattr(self, name) >= 1, "must be >= 1")
        require(self, "learning_rate", self.learning_rate > 0, "must be > 0")
        require(self, "gamma", 0 <= self.gamma <= 1, "must be in [0, 1]")
        require(self, "gae_lambda", 0 <= self.gae_lambda <= 1, "must be in [0, 1]")
        require(self, "max_grad_norm", self.max_grad_norm > 0, "must be > 0")
        require(self, "optimizer", self.optimizer in ("rmsprop", "adam"), "must be 'rmsprop' or 'adam'")
        require(self, "activation", self.activation in ("tanh", "relu"), "must be 'tanh' or 'relu'")
        check_options(self)


def train(config: A2CConfig) -> tuple[ActorCriticPolicy, History]:
    envs = make_vec_env(config.env_id, config.num_envs, config.env_kwargs)
    observations = obs_spec(envs.single_observation_space)
    actions = action_spec(envs.single_action_space, "a2c", allow_box=True)
    run = Run(config)  # seeds torch before the networks are initialised
    agent = ActorCritic(observations, actions, config.hidden_sizes, config.activation)
    if config.optimizer == "rmsprop":
        optimizer = torch.optim.RMSprop(agent.parameters(), lr=config.learning_rate, alpha=0.99, eps=1e-5, foreach=True)
    else:
        optimizer = torch.optim.Adam(agent.parameters(), lr=config.learning_rate, fused=True)
    policy = ActorCriticPolicy(agent)
    tracker = EpisodeTracker(config.num_envs)
    stateful = {"agent": agent, "optimizer": optimizer, "episodes": tracker}
    risk = RolloutRisk.from_config(config, config.num_envs)  # None unless a risk option is on
    if risk is not None:
        stateful["risk"] = risk

    step = run.restore(stateful)
    envs, obs = run.start_env(envs, step)
    stepper = envs if risk is None else risk.wrap(envs)  # checkpoints snapshot `envs`, the unwrapped one
    rng = run.rng
    batch_size = config.num_envs * config.num_steps

    while step < config.total_steps:
        if config.anneal_lr:
            optimizer.param_groups[0]["lr"] = config.learning_rate * (1.0 - step / config.total_steps)

        # 1. a short rollout and its n-step returns
        rollout = collect_rollout(stepper, agent, obs, config.num_steps, rng, tracker)
        obs = rollout.last_obs
        step += batch_size
        rewards = rollout.rewards if risk is None else risk.shape(rollout.rewards, rollout.episode_end, stepper)
        advantages, returns = gae(rewards, rollout.values, rollout.next_values, rollout.terminated,
                                  rollout.episode_end, config.gamma, config.gae_lambda)

        # 2. one gradient step on the whole batch
        b_obs = torch.from_numpy(rollout.obs.reshape(batch_size, -1))
        b_actions = torch.from_numpy(rollout.actions.reshape(batch_size, *rollout.actions.shape[2:]))
        b_advantages = torch.from_numpy(advantages.reshape(-1)).float()
        b_returns = torch.from_numpy(returns.reshape(-1)).float()
        if config.norm_adv:
            b_advantages = (b_advantages - b_advantages.mean()) / (b_advantages.std() + 1e-8)

        log_probs, entropy = agent.log_prob_entropy(b_obs, b_actions)
        values = agent.value(b_obs)
        policy_loss = -(log_probs * b_advantages).mean()
        value_loss = (values - b_returns).pow(2).mean()
        entropy_mean = entropy.mean()
        loss = policy_loss - config.ent_coef * entropy_mean + config.vf_coef * value_loss
        optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(agent.parameters(), config.max_grad_norm)
        optimizer.step()

        if run.log_due(step):
            run.log(step, {
                **tracker.pop_finished(),
                "policy_loss": policy_loss.item(),
                "value_loss": value_loss.item(),
                "entropy": entropy_mean.item(),
                "explained_variance": explained_variance(rollout.values.reshape(-1), returns.reshape(-1)),
                "learning_rate": optimizer.param_groups[0]["lr"],
                **(risk.metrics if risk is not None else {}),
            })
        if run.checkpoint_due(step):
            run.save_checkpoint(step, policy, stateful, (envs, obs))
        run.progress(step)

    envs.close()
    return run.finish(step, policy, stateful, (envs, obs))
