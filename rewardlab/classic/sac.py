"""Soft Actor-Critic (Haarnoja et al. 2018, "SAC: Algorithms and Applications") with automatic entropy tuning.

1-D Box actions with finite bounds; Box or Discrete (one-hot) observations. Defaults are SB3's SAC
(lr 3e-4 for everything, batch 256, tau 0.005, one gradient step per env step, two 256-256 ReLU
critics), with learning_starts 1000. The actor is a tanh-squashed Gaussian: a = tanh(u), u ~ N(mu(s),
sigma(s)), rescaled to the env's bounds only when stepping the env (the buffer and critics see a in
[-1, 1]). Each environment step: act (uniformly at random before `learning_starts`, a policy sample
after), store the transition, and per gradient step, on a minibatch from the replay buffer:

    alpha loss   -log(alpha) * (log pi(a~|s) + target_entropy)          a~ ~ pi(.|s), target_entropy = -dim(A)
    y            r + gamma * (1 - terminated) * (min_j Q_targ_j(s', a') - alpha * log pi(a'|s'))      a' ~ pi(.|s')
    critic loss  0.5 * sum_j (Q_j(s, a) - y)^2                          (mean over the batch)
    actor loss   alpha * log pi(a~|s) - min_j Q_j(s, a~)                (a~ reparameterised, critics after their step)

then Q_targ_j <- tau * Q_j + (1 - tau) * Q_targ_j. log pi includes the tanh correction
(networks.squashed_gaussian_log_prob). The order of the three updates is SB3's. s' is the state
actually reached, also when a time limit cut the episode; only `terminated` stops the bootstrap.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rewardlab.classic.config import RunConfig, require
from rewardlab.classic.envs import EpisodeTracker, action_spec, encode_obs, make_env, obs_dim, obs_spec
from rewardlab.classic.networks import SquashedGaussianActor, StateActionCritic, to_env_box
from rewardlab.classic.policies import SquashedGaussianPolicy
from rewardlab.classic.replay import ReplayBuffer
from rewardlab.classic.runs import History, Run


@dataclass
class SACConfig(RunConfig):
    algo = "sac"

    env_id: str = "Pendulum-v1"
    """Any Gymnasium id with a 1-D Box action space with finite bounds."""
    total_steps: int = 20_000
    """Environment steps to train for (RL Zoo's Pendulum budget)."""
    log_every: int = 1_000
    """Environment steps between rows of metrics.jsonl."""
    checkpoint_every: int = 10_000
    """Environment steps between checkpoints (they hold the replay buffer); the last step is always checkpointed."""
    learning_rate: float = 3e-4
    """Adam step size of the actor, the critics and the entropy coefficient (SB3 uses one for all)."""
    buffer_size: int = 1_000_000
    """Replay buffer capacity in transitions."""
    learning_starts: int = 1_000
    """Environment steps of uniformly random actions before the first gradient step."""
    batch_size: int = 256
    """Transitions per gradient step."""
    gamma: float = 0.99
    """Discount factor."""
    tau: float = 0.005
    """Polyak rate of the target critics: target <- tau * online + (1 - tau) * target."""
    train_frequency: int = 1
    """Environment steps between training rounds."""
    gradient_steps: int = 1
    """Gradient steps per training round."""
    target_network_frequency: int = 1
    """Gradient steps between target-critic updates."""
    autotune: bool = True
    """Learn the entropy coefficient alpha so that the policy's entropy tracks target_entropy."""
    alpha: float = 1.0
    """Entropy coefficient: the initial value with autotune (SB3's 'auto' starts at 1.0), fixed without."""
    target_entropy: float | None = None
    """Entropy the tuned alpha aims for; null = -dim(A) (Haarnoja et al.)."""
    hidden_sizes: tuple[int, ...] = (256, 256)
    """Actor and critic hidden layer widths (ReLU)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("buffer_size", "batch_size", "train_frequency", "gradient_steps", "target_network_frequency"):
            require(self, name, getattr(self, name) >= 1, "must be >= 1")
        require(self, "learning_rate", self.learning_rate > 0, "must be > 0")
        require(self, "learning_starts", self.learning_starts >= 0, "must be >= 0")
        require(self, "gamma", 0 <= self.gamma <= 1, "must be in [0, 1]")
        require(self, "tau", 0 < self.tau <= 1, "must be in (0, 1]")
        require(self, "alpha", self.alpha > 0, "must be > 0")


@torch.no_grad()
def soft_update(target: nn.Module, online: nn.Module, tau: float) -> None:
    """target <- tau * online + (1 - tau) * target, parameter by parameter."""
    for target_param, online_param in zip(target.parameters(), online.parameters()):
        target_param.lerp_(online_param, tau)


def alpha_loss(log_alpha: torch.Tensor, log_probs: torch.Tensor, target_entropy: float) -> torch.Tensor:
    """-log(alpha) * (log pi + target_entropy), mean over the batch (SB3's form). When the policy's
    entropy -log pi is below the target, log pi + target_entropy > 0 and descending this loss raises
    alpha; above the target it lowers alpha."""
    return -(log_alpha * (log_probs.detach() + target_entropy)).mean()


def soft_q_targets(batch: dict[str, torch.Tensor], actor: SquashedGaussianActor, target_critics: list[StateActionCritic],
                   alpha: float, gamma: float) -> torch.Tensor:
    with torch.no_grad():
        next_actions, next_log_probs = actor.sample(batch["next_obs"])
        next_q = torch.min(*(critic(batch["next_obs"], next_actions) for critic in target_critics))
        return batch["rewards"] + gamma * (1.0 - batch["terminated"]) * (next_q - alpha * next_log_probs)


def train(config: SACConfig) -> tuple[SquashedGaussianPolicy, History]:
    env = make_env(config.env_id, config.env_kwargs)
    observations = obs_spec(env.observation_space)
    actions_spec = action_spec(env.action_space, "sac", allow_box=True)
    if actions_spec["kind"] != "box":
        raise ValueError(f"sac needs a 1-D Box action space; this env has {env.action_space}")
    if not (np.all(np.isfinite(actions_spec["low"])) and np.all(np.isfinite(actions_spec["high"]))):
        raise ValueError(f"sac needs finite action bounds to rescale tanh's [-1, 1] to; this env has {env.action_space}")
    run = Run(config)  # seeds torch before the networks are initialised
    actor = SquashedGaussianActor(observations, actions_spec, config.hidden_sizes)
    critics = [StateActionCritic(observations, actions_spec, config.hidden_sizes) for _ in range(2)]
    target_critics = [StateActionCritic(observations, actions_spec, config.hidden_sizes) for _ in range(2)]
    for target, critic in zip(target_critics, critics):
        target.load_state_dict(critic.state_dict())
    critic_modules = nn.ModuleList(critics)
    log_alpha = nn.Parameter(torch.full((1,), math.log(config.alpha)), requires_grad=config.autotune)
    target_entropy = -float(actions_spec["dim"]) if config.target_entropy is None else config.target_entropy
    actor_optimizer = torch.optim.Adam(actor.parameters(), lr=config.learning_rate, fused=True)
    critic_optimizer = torch.optim.Adam(critic_modules.parameters(), lr=config.learning_rate, fused=True)
    alpha_optimizer = torch.optim.Adam([log_alpha], lr=config.learning_rate)
    buffer = ReplayBuffer(config.buffer_size, obs_dim(observations), action_dim=actions_spec["dim"])
    policy = SquashedGaussianPolicy(actor)
    tracker = EpisodeTracker(1)
    alpha_holder = nn.ParameterDict({"log_alpha": log_alpha})  # state_dict/load_state_dict for the checkpoint
    stateful = {"actor": actor, "critics": critic_modules, "target_critics": nn.ModuleList(target_critics),
                "log_alpha": alpha_holder, "actor_optimizer": actor_optimizer, "critic_optimizer": critic_optimizer,
                "alpha_optimizer": alpha_optimizer, "replay_buffer": buffer, "episodes": tracker}

    step = run.restore(stateful)
    env, obs = run.start_env(env, step)
    rng = run.rng
    # gradient steps taken before `step` (the target cadence counts them): rounds at multiples of train_frequency past learning_starts
    gradient_step = max(0, step // config.train_frequency - config.learning_starts // config.train_frequency) * config.gradient_steps
    logged: dict[str, list[float]] = {"critic_loss": [], "actor_loss": [], "alpha": [], "q_value": [], "entropy": []}

    while step < config.total_steps:
        # 1. act: uniform over [-1, 1]^d while collecting, then a sample from the squashed Gaussian
        encoded = encode_obs(np.asarray(obs)[None], observations)
        if step < config.learning_starts:
            action = rng.uniform(-1.0, 1.0, actions_spec["dim"]).astype(np.float32)
        else:
            action = actor.act(encoded, rng)[0]
        next_obs, reward, terminated, truncated, _ = env.step(to_env_box(action, actions_spec))

        # 2. store (s, a in [-1, 1], r, s', terminated); s' is the state reached, also when the time limit cut in
        buffer.add(encoded[0], action, float(reward), encode_obs(np.asarray(next_obs)[None], observations)[0], terminated)
        tracker.add_step(float(reward), terminated or truncated)
        obs = env.reset()[0] if terminated or truncated else next_obs
        step += 1

        # 3. learn: entropy coefficient, then the critics, then the actor (SB3's order)
        if step > config.learning_starts and step % config.train_frequency == 0:
            for _ in range(config.gradient_steps):
                batch = buffer.sample(config.batch_size, rng)
                new_actions, log_probs = actor.sample(batch["obs"])
                if config.autotune:
                    loss_alpha = alpha_loss(log_alpha, log_probs, target_entropy)
                    alpha_optimizer.zero_grad()
                    loss_alpha.backward()
                    alpha_optimizer.step()
                alpha = log_alpha.detach().exp().item()

                targets = soft_q_targets(batch, actor, target_critics, alpha, config.gamma)
                q_taken = [critic(batch["obs"], batch["actions"]) for critic in critics]
                critic_loss = 0.5 * sum(F.mse_loss(q, targets) for q in q_taken)
                critic_optimizer.zero_grad()
                critic_loss.backward()
                critic_optimizer.step()

                critic_modules.requires_grad_(False)  # the actor loss differentiates through Q only into the actor
                q_new = torch.min(*(critic(batch["obs"], new_actions) for critic in critics))
                actor_loss = (alpha * log_probs - q_new).mean()
                actor_optimizer.zero_grad()
                actor_loss.backward()
                actor_optimizer.step()
                critic_modules.requires_grad_(True)

                gradient_step += 1
                if gradient_step % config.target_network_frequency == 0:
                    for target, critic in zip(target_critics, critics):
                        soft_update(target, critic, config.tau)
                logged["critic_loss"].append(critic_loss.item())
                logged["actor_loss"].append(actor_loss.item())
                logged["alpha"].append(alpha)
                logged["q_value"].append(q_taken[0].mean().item())
                logged["entropy"].append(-log_probs.mean().item())

        if run.log_due(step):
            run.log(step, {**tracker.pop_finished(), **{key: np.mean(values) for key, values in logged.items() if values}})
            for values in logged.values():
                values.clear()
        if run.checkpoint_due(step):
            run.save_checkpoint(step, policy, stateful, (env, obs))
        run.progress(step)

    env.close()
    return run.finish(step, policy, stateful, (env, obs))
