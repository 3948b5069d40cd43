"""Deep Q-Network (Mnih et al. 2015) with an optional Double-DQN target (van Hasselt et al. 2016).

Discrete actions; Box or Discrete (one-hot) observations. Defaults are CleanRL's CartPole setting
(docs/algorithms.md#classic-rl-defaults) with the Double-DQN target switched on. Each environment step: act epsilon-greedily, store the transition, and every
`train_frequency` steps fit Q(s, a) to

    r + gamma * (1 - terminated) * Q_target(s', argmax_a' Q_?(s', a'))     ? = target (DQN) or online (Double)

on a minibatch from the replay buffer; every `target_network_frequency` steps move the target
network to the online one. One environment, as in the references: DQN's cost is the gradient
steps, not the env. s' is the state actually reached, also when a time limit cut the episode.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rewardlab.classic.config import RunConfig, require
from rewardlab.classic.envs import EpisodeTracker, action_spec, encode_obs, make_env, obs_dim, obs_spec
from rewardlab.classic.networks import QNetwork
from rewardlab.classic.policies import QNetworkPolicy
from rewardlab.classic.replay import ReplayBuffer
from rewardlab.classic.runs import History, Run
from rewardlab.classic.schedules import linear_schedule


@dataclass
class DQNConfig(RunConfig):
    algo = "dqn"

    learning_rate: float = 2.5e-4
    """Adam step size."""
    buffer_size: int = 10_000
    """Replay buffer capacity in transitions."""
    gamma: float = 0.99
    """Discount factor."""
    tau: float = 1.0
    """Target update rate: 1.0 copies the online network, < 1 is a Polyak average."""
    target_network_frequency: int = 500
    """Environment steps between target-network updates."""
    batch_size: int = 128
    """Transitions per gradient step."""
    epsilon_start: float = 1.0
    """Random-action probability at step 0."""
    epsilon_end: float = 0.05
    """Random-action probability after the decay."""
    exploration_fraction: float = 0.5
    """Fraction of total_steps over which epsilon decays linearly."""
    learning_starts: int = 10_000
    """Environment steps of pure data collection before the first gradient step."""
    train_frequency: int = 10
    """Environment steps between training rounds."""
    gradient_steps: int = 1
    """Gradient steps per training round."""
    double_dqn: bool = True
    """Pick the next action with the online network and score it with the target network. On by
    default: with CleanRL's otherwise unchanged CartPole setting, vanilla DQN (False) collapsed late in
    training on 1 of 3 seeds (greedy return 395 at 500k steps); Double DQN solved 5 of 5."""
    loss: str = "mse"
    """'mse' (CleanRL) or 'huber' (SB3, Mnih et al.)."""
    max_grad_norm: float = 0.0
    """Clip the gradient norm to this; 0 = no clipping (SB3 uses 10)."""
    hidden_sizes: tuple[int, ...] = (120, 84)
    """Q-network hidden layer widths (ReLU)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("buffer_size", "target_network_frequency", "batch_size", "train_frequency", "gradient_steps"):
            require(self, name, getattr(self, name) >= 1, "must be >= 1")
        require(self, "learning_rate", self.learning_rate > 0, "must be > 0")
        require(self, "gamma", 0 <= self.gamma <= 1, "must be in [0, 1]")
        require(self, "tau", 0 < self.tau <= 1, "must be in (0, 1]")
        for name in ("epsilon_start", "epsilon_end", "exploration_fraction"):
            require(self, name, 0 <= getattr(self, name) <= 1, "must be in [0, 1]")
        require(self, "learning_starts", self.learning_starts >= 0, "must be >= 0")
        require(self, "loss", self.loss in ("mse", "huber"), "must be 'mse' or 'huber'")
        require(self, "max_grad_norm", self.max_grad_norm >= 0, "must be >= 0 (0 = off)")
        require(self, "hidden_sizes", len(self.hidden_sizes) >= 1, "needs at least one layer, e.g. 120,84")


@torch.no_grad()
def update_target(target: nn.Module, online: nn.Module, tau: float) -> None:
    """target <- tau * online + (1 - tau) * target, parameter by parameter (tau = 1: a copy)."""
    for target_param, online_param in zip(target.parameters(), online.parameters()):
        target_param.lerp_(online_param, tau)


def td_targets(batch: dict[str, torch.Tensor], q_network: QNetwork, target_network: QNetwork, gamma: float, double_dqn: bool) -> torch.Tensor:
    with torch.no_grad():
        next_q_target = target_network(batch["next_obs"])
        if double_dqn:
            next_actions = q_network(batch["next_obs"]).argmax(1, keepdim=True)
            next_value = next_q_target.gather(1, next_actions).squeeze(1)
        else:
            next_value = next_q_target.max(1).values
        return batch["rewards"] + gamma * (1.0 - batch["terminated"]) * next_value


def train(config: DQNConfig) -> tuple[QNetworkPolicy, History]:
    env = make_env(config.env_id, config.env_kwargs)
    observations = obs_spec(env.observation_space)
    actions_spec = action_spec(env.action_space, "dqn", allow_box=False)
    run = Run(config)  # seeds torch before the networks are initialised
    q_network = QNetwork(observations, actions_spec, config.hidden_sizes)
    target_network = QNetwork(observations, actions_spec, config.hidden_sizes)
    target_network.load_state_dict(q_network.state_dict())
    # fused: one kernel for all parameters instead of a Python loop over them (2x faster at these sizes)
    optimizer = torch.optim.Adam(q_network.parameters(), lr=config.learning_rate, fused=True)
    buffer = ReplayBuffer(config.buffer_size, obs_dim(observations))
    policy = QNetworkPolicy(q_network)
    tracker = EpisodeTracker(1)
    stateful = {"q_network": q_network, "target_network": target_network, "optimizer": optimizer,
                "replay_buffer": buffer, "episodes": tracker}

    step = run.restore(stateful)
    env, obs = run.start_env(env, step)
    rng = run.rng
    decay_steps = int(config.exploration_fraction * config.total_steps)
    losses: list[float] = []
    q_means: list[float] = []

    while step < config.total_steps:
        # 1. act epsilon-greedily
        epsilon = linear_schedule(config.epsilon_start, config.epsilon_end, decay_steps, step)
        encoded = encode_obs(np.asarray(obs)[None], observations)
        if rng.random() < epsilon:
            action = int(rng.integers(actions_spec["n"]))
        else:
            action = int(q_network.greedy(encoded)[0])
        next_obs, reward, terminated, truncated, _ = env.step(action + actions_spec["start"])

        # 2. store (s, a, r, s', terminated); s' is the state reached, also when the time limit cut in
        buffer.add(encoded[0], action, float(reward), encode_obs(np.asarray(next_obs)[None], observations)[0], terminated)
        tracker.add_step(float(reward), terminated or truncated)
        obs = env.reset()[0] if terminated or truncated else next_obs
        step += 1

        # 3. learn: regress Q(s, a) on the bootstrapped target
        if step > config.learning_starts and step % config.train_frequency == 0:
            for _ in range(config.gradient_steps):
                batch = buffer.sample(config.batch_size, rng)
                targets = td_targets(batch, q_network, target_network, config.gamma, config.double_dqn)
                q_taken = q_network(batch["obs"]).gather(1, batch["actions"].unsqueeze(1)).squeeze(1)
                loss = F.mse_loss(q_taken, targets) if config.loss == "mse" else F.smooth_l1_loss(q_taken, targets)
                optimizer.zero_grad()
                loss.backward()
                if config.max_grad_norm > 0:
                    nn.utils.clip_grad_norm_(q_network.parameters(), config.max_grad_norm)
                optimizer.step()
                losses.append(loss.item())
                q_means.append(q_taken.mean().item())
        if step % config.target_network_frequency == 0:
            update_target(target_network, q_network, config.tau)

        if run.log_due(step):
            learning = {"loss": np.mean(losses), "q_value": np.mean(q_means)} if losses else {}
            run.log(step, {**tracker.pop_finished(), **learning, "epsilon": epsilon})
            losses.clear()
            q_means.clear()
        if run.checkpoint_due(step):
            run.save_checkpoint(step, policy, stateful, (env, obs))
        run.progress(step)

    env.close()
    return run.finish(step, policy, stateful, (env, obs))
