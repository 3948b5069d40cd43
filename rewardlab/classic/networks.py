"""The two network shapes the classic algorithms need: a Q-network and a separate actor + critic.

Both take already-encoded float32 observations (see envs.encode_obs) and keep the constructor
arguments in `self.spec`, so a saved state dict can be rebuilt into the same module.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn

from rewardlab.classic.envs import obs_dim

ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU}


def mlp(in_dim: int, hidden_sizes: tuple[int, ...], out_dim: int, activation: str, out_gain: float | None) -> nn.Sequential:
    """Linear/activation stack. `out_gain` set: orthogonal init (hidden gain sqrt 2, output gain as
    given, zero biases), the init PPO/A2C implementations rely on; a small output gain starts the
    policy near uniform. `out_gain=None` keeps PyTorch's default init (what DQN references use)."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; valid: {', '.join(ACTIVATIONS)}")
    sizes = (in_dim, *hidden_sizes, out_dim)
    layers: list[nn.Module] = []
    for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        linear = nn.Linear(fan_in, fan_out)
        is_output = i == len(sizes) - 2
        if out_gain is not None:
            nn.init.orthogonal_(linear.weight, out_gain if is_output else math.sqrt(2))
            nn.init.zeros_(linear.bias)
        layers.append(linear)
        if not is_output:
            layers.append(ACTIVATIONS[activation]())
    return nn.Sequential(*layers)


class NumpyMLP:
    """Inference-only twin of an `mlp`, evaluated with numpy on views of the torch parameters.

    Acting on one CartPole observation costs ~8 us this way against ~28 us through nn.Module calls,
    which is most of the per-step cost of DQN and of a PPO rollout. The arrays share memory with the
    parameters, and optimizers and load_state_dict update parameters in place, so the twin always
    sees the current weights. tests/classic compare it with the module's own forward.
    """

    def __init__(self, module: nn.Sequential):
        self.layers: list[tuple[np.ndarray, np.ndarray] | str] = []
        for layer in module:
            if isinstance(layer, nn.Linear):
                self.layers.append((layer.weight.detach().numpy().T, layer.bias.detach().numpy()))
            else:
                self.layers.append("tanh" if isinstance(layer, nn.Tanh) else "relu")

    def __call__(self, x: np.ndarray) -> np.ndarray:
        for layer in self.layers:
            if layer == "tanh":
                x = np.tanh(x)
            elif layer == "relu":
                x = np.maximum(x, 0.0)
            else:
                weight_t, bias = layer
                x = x @ weight_t + bias
        return x


class QNetwork(nn.Module):
    """obs -> one Q-value per discrete action."""

    def __init__(self, obs_spec: dict[str, Any], action_spec: dict[str, Any], hidden_sizes=(120, 84), activation="relu"):
        super().__init__()
        self.spec = {"obs_spec": obs_spec, "action_spec": action_spec, "hidden_sizes": list(hidden_sizes), "activation": activation}
        self.net = mlp(obs_dim(obs_spec), tuple(hidden_sizes), action_spec["n"], activation, out_gain=None)
        self.fast = NumpyMLP(self.net)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(obs)

    def greedy(self, obs: np.ndarray) -> np.ndarray:
        """argmax_a Q(obs, a) for a batch of encoded observations, through the numpy twin."""
        return self.fast(obs).argmax(1)


class ActorCritic(nn.Module):
    """Separate actor and critic MLPs (no shared trunk, as in CleanRL's PPO and SB3's default).

    Discrete actions: the actor outputs logits. Box actions: it outputs the mean of a diagonal
    Gaussian whose log-std is a learned, state-independent vector.
    """

    def __init__(self, obs_spec: dict[str, Any], action_spec: dict[str, Any], hidden_sizes=(64, 64), activation="tanh"):
        super().__init__()
        self.spec = {"obs_spec": obs_spec, "action_spec": action_spec, "hidden_sizes": list(hidden_sizes), "activation": activation}
        self.discrete = action_spec["kind"] == "discrete"
        in_dim = obs_dim(obs_spec)
        out_dim = action_spec["n"] if self.discrete else action_spec["dim"]
        self.actor = mlp(in_dim, tuple(hidden_sizes), out_dim, activation, out_gain=0.01)
        self.critic = mlp(in_dim, tuple(hidden_sizes), 1, activation, out_gain=1.0)
        if not self.discrete:
            self.log_std = nn.Parameter(torch.zeros(out_dim))
        self.fast_actor, self.fast_critic = NumpyMLP(self.actor), NumpyMLP(self.critic)

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        return self.critic(obs).squeeze(-1)

    def log_prob_entropy(self, obs: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-probability of `actions` (indices for Discrete) and the policy entropy, both [B]."""
        out = self.actor(obs)
        if self.discrete:
            log_probs = torch.log_softmax(out, dim=-1)
            chosen = log_probs.gather(1, actions.long().unsqueeze(1)).squeeze(1)
            entropy = -(log_probs.exp() * log_probs).sum(-1)
            return chosen, entropy
        log_std = self.log_std.expand_as(out)
        z = (actions - out) / log_std.exp()
        log_prob = (-0.5 * z.pow(2) - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)
        entropy = (0.5 + 0.5 * math.log(2 * math.pi) + log_std).sum(-1)
        return log_prob, entropy

    def sample(self, obs: np.ndarray, rng: np.random.Generator, with_value: bool = True):
        """Sample actions for a batch of encoded observations; returns numpy (actions, log_probs, values).

        Runs on the numpy twins with the caller's Generator: torch.distributions plus nn.Module calls
        cost ~150 us per step at these sizes, several times a CartPole step, and a Generator is easy to
        checkpoint. log_prob_entropy is the reference this must agree with (tests/classic check it).
        """
        out = self.fast_actor(obs).astype(np.float64)
        values = self.fast_critic(obs)[:, 0] if with_value else None
        if self.discrete:
            log_probs = out - out.max(1, keepdims=True)
            log_probs -= np.log(np.exp(log_probs).sum(1, keepdims=True))
            cumulative = np.exp(log_probs).cumsum(1)
            actions = (cumulative < rng.random((len(obs), 1)) * cumulative[:, -1:]).sum(1)
            actions = np.minimum(actions, out.shape[1] - 1)
            return actions, log_probs[np.arange(len(obs)), actions], values
        log_std = self.log_std.detach().numpy().astype(np.float64)
        noise = rng.standard_normal(out.shape)
        actions = out + np.exp(log_std) * noise
        log_prob = (-0.5 * noise**2 - log_std - 0.5 * math.log(2 * math.pi)).sum(1)
        return actions.astype(np.float32), log_prob, values

    def greedy(self, obs: np.ndarray) -> np.ndarray:
        out = self.fast_actor(obs)
        return out.argmax(1) if self.discrete else out


def to_env_actions(actions: np.ndarray, action_spec: dict[str, Any]) -> np.ndarray:
    """Network actions -> what env.step takes: shift Discrete indices by `start`, clip Box to bounds.
    (The unclipped Gaussian sample is what gets stored and scored; clipping is the env's business.)"""
    if action_spec["kind"] == "discrete":
        return actions.astype(np.int64) + action_spec["start"]
    return np.clip(actions, np.asarray(action_spec["low"], np.float32), np.asarray(action_spec["high"], np.float32))
