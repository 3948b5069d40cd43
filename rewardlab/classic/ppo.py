"""Proximal Policy Optimization with the clipped objective (Schulman et al. 2017).

Discrete or 1-D Box actions. Defaults are CleanRL's `ppo.py` (docs/algorithms.md#classic-rl-defaults). Each update:
run `num_envs` envs for `num_steps` steps, compute GAE advantages (bootstrapping on time-limit
truncation, not on termination), then `update_epochs` passes over shuffled minibatches of

    loss = -min(ratio * A, clip(ratio, 1 - eps, 1 + eps) * A) - ent_coef * entropy + vf_coef * value_loss

with ratio = pi(a|s) / pi_old(a|s) and A normalised per minibatch.

Risk-sensitive options (rewardlab/classic/risk.py; all off by default, and then the run is exactly the
risk-neutral one): mean-variance (mv_coef), mean-CVaR (cvar_coef, cvar_alpha) and a Lagrangian constraint
on an info entry (lagrange_limit, e.g. |inventory| on rewardlab/MarketMaking-v0). They adjust the rollout's
rewards before GAE; an env's own reward shaping (the market's inventory_penalty) goes through env_kwargs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
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
class PPOConfig(RiskOptions, RunConfig):
    algo = "ppo"

    num_envs: int = 4
    """Parallel environments (gymnasium SyncVectorEnv)."""
    num_steps: int = 128
    """Steps per env per rollout; one update uses num_envs * num_steps transitions."""
    learning_rate: float = 2.5e-4
    """Adam step size (eps 1e-5)."""
    anneal_lr: bool = True
    """Decay the learning rate linearly to 0 over total_steps."""
    gamma: float = 0.99
    """Discount factor."""
    gae_lambda: float = 0.95
    """GAE lambda: 0 = one-step TD advantages, 1 = Monte-Carlo minus baseline."""
    num_minibatches: int = 4
    """Minibatches per epoch."""
    update_epochs: int = 4
    """Passes over each rollout."""
    norm_adv: bool = True
    """Normalise advantages to zero mean and unit std within each minibatch."""
    clip_coef: float = 0.2
    """PPO ratio clipping epsilon."""
    clip_vloss: bool = True
    """Clip the value update around the old values, like the ratio (CleanRL's default)."""
    ent_coef: float = 0.01
    """Entropy bonus weight."""
    vf_coef: float = 0.5
    """Weight of the value loss 0.5 * (V - return)^2 (CleanRL convention: SB3's vf_coef x is vf_coef 2x here)."""
    max_grad_norm: float = 0.5
    """Global gradient-norm clip."""
    target_kl: float | None = None
    """Stop the epochs early once the approximate KL to the rollout policy exceeds this (None = never)."""
    hidden_sizes: tuple[int, ...] = (64, 64)
    """Hidden widths of the actor and of the (separate) critic."""
    activation: str = "tanh"
    """'tanh' or 'relu'."""

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("num_envs", "num_steps", "num_minibatches", "update_epochs"):
            require(self, name, getattr(self, name) >= 1, "must be >= 1")
        require(self, "num_minibatches", self.num_envs * self.num_steps % self.num_minibatches == 0,
                f"must divide num_envs * num_steps = {self.num_envs * self.num_steps}")
        require(self, "learning_rate", self.learning_rate > 0, "must be > 0")
        require(self, "gamma", 0 <= self.gamma <= 1, "must be in [0, 1]")
        require(self, "gae_lambda", 0 <= self.gae_lambda <= 1, "must be in [0, 1]")
        require(self, "clip_coef", self.clip_coef > 0, "must be > 0")
        require(self, "max_grad_norm", self.max_grad_norm > 0, "must be > 0")
        require(self, "activation", self.activation in ("tanh", "relu"), "must be 'tanh' or 'relu'")
        check_options(self)


def train(config: PPOConfig) -> tuple[ActorCriticPolicy, History]:
    envs = make_vec_env(config.env_id, config.num_envs, config.env_kwargs)
    observations = obs_spec(envs.single_observation_space)
    actions = action_spec(envs.single_action_space, "ppo", allow_box=True)
    run = Run(config)  # seeds torch before the networks are initialised
    agent = ActorCritic(observations, actions, config.hidden_sizes, config.activation)
    optimizer = torch.optim.Adam(agent.parameters(), lr=config.learning_rate, eps=1e-5, fused=True)
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
    minibatch_size = batch_size // config.num_minibatches

    while step < config.total_steps:
        if config.anneal_lr:
            optimizer.param_groups[0]["lr"] = config.learning_rate * (1.0 - step / config.total_steps)

        # 1. rollout with the current policy, then advantages
        rollout = collect_rollout(stepper, agent, obs, config.num_steps, rng, tracker)
        obs = rollout.last_obs
        step += batch_size
        rewards = rollout.rewards if risk is None else risk.shape(rollout.rewards, rollout.episode_end, stepper)
        advantages, returns = gae(rewards, rollout.values, rollout.next_values, rollout.terminated,
                                  rollout.episode_end, config.gamma, config.gae_lambda)

        # 2. flatten [T, N] -> [T * N]; from here on it is a supervised-looking problem on a fixed batch
        b_obs = torch.from_numpy(rollout.obs.reshape(batch_size, -1))
        b_actions = torch.from_numpy(rollout.actions.reshape(batch_size, *rollout.actions.shape[2:]))
        b_old_log_probs = torch.from_numpy(rollout.log_probs.reshape(-1)).float()
        b_old_values = torch.from_numpy(rollout.values.reshape(-1)).float()
        b_advantages = torch.from_numpy(advantages.reshape(-1)).float()
        b_returns = torch.from_numpy(returns.reshape(-1)).float()

        # 3. several epochs of clipped policy-gradient steps on shuffled minibatches
        clip_fractions = []
        for _epoch in range(config.update_epochs):
            order = torch.from_numpy(rng.permutation(batch_size))
            for start in range(0, batch_size, minibatch_size):
                index = order[start:start + minibatch_size]
                new_log_probs, entropy = agent.log_prob_entropy(b_obs[index], b_actions[index])
                new_values = agent.value(b_obs[index])
                log_ratio = new_log_probs - b_old_log_probs[index]
                ratio = log_ratio.exp()
                with torch.no_grad():
                    approx_kl = ((ratio - 1) - log_ratio).mean()  # the k3 estimator, never negative
                    clip_fractions.append(((ratio - 1.0).abs() > config.clip_coef).float().mean().item())

                mb_advantages = b_advantages[index]
                if config.norm_adv:
                    mb_advantages = (mb_advantages - mb_advantages.mean()) / (mb_advantages.std() + 1e-8)
                policy_loss = torch.max(
                    -mb_advantages * ratio, -mb_advantages * ratio.clamp(1 - config.clip_coef, 1 + config.clip_coef)
                ).mean()

                value_error = (new_values - b_returns[index]).pow(2)
                if config.clip_vloss:
                    clipped = b_old_values[index] + (new_values - b_old_values[index]).clamp(-config.clip_coef, config.clip_coef)
                    value_error = torch.max(value_error, (clipped - b_returns[index]).pow(2))
                value_loss = 0.5 * value_error.mean()

                entropy_mean = entropy.mean()
                loss = policy_loss - config.ent_coef * entropy_mean + config.vf_coef * value_loss
                optimizer.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(agent.parameters(), config.max_grad_norm)
                optimizer.step()
            if config.target_kl is not None and approx_kl.item() > config.target_kl:
                break

        if run.log_due(step):
            run.log(step, {
                **tracker.pop_finished(),
                "policy_loss": policy_loss.item(),
                "value_loss": value_loss.item(),
                "entropy": entropy_mean.item(),
                "approx_kl": approx_kl.item(),
                "clip_fraction": float(np.mean(clip_fractions)),
                "explained_variance": explained_variance(rollout.values.reshape(-1), returns.reshape(-1)),
                "learning_rate": optimizer.param_groups[0]["lr"],
                **(risk.metrics if risk is not None else {}),
            })
        if run.checkpoint_due(step):
            run.save_checkpoint(step, policy, stateful, (envs, obs))
        run.progress(step)

    envs.close()
    return run.finish(step, policy, stateful, (envs, obs))

