"""The network shapes the classic algorithms need: a Q-network, a separate actor + critic, and SAC's
tanh-squashed Gaussian actor with its state-action critic.

Both take already-encoded float32 observations (see envs.encode_obs) and keep the constructor
arguments in `self.spec`, so a saved state dict can be rebuilt into the same module.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
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


class SquashedGaussianActor(nn.Module):
    """SAC's actor (Haarnoja et al. 2018): obs -> mean and log-std of a diagonal Gaussian over u, and the
    action is a = tanh(u) in [-1, 1]^d; `to_env_box` rescales it to the env's bounds. One output layer of
    width 2d holds [mean, log_std], the same function as SB3's two heads on a shared latent. log_std is
    clamped to [-20, 2] (SB3). Needs finite Box bounds."""

    LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0

    def __init__(self, obs_spec: dict[str, Any], action_spec: dict[str, Any], hidden_sizes=(256, 256), activation="relu"):
        super().__init__()
        if action_spec["kind"] != "box":
            raise ValueError(f"a squashed Gaussian actor needs a Box action space, got {action_spec['kind']}")
        if not (np.all(np.isfinite(action_spec["low"])) and np.all(np.isfinite(action_spec["high"]))):
            raise ValueError(f"a squashed Gaussian actor needs finite action bounds, got {action_spec['low']}..{action_spec['high']}")
        self.spec = {"obs_spec": obs_spec, "action_spec": action_spec, "hidden_sizes": list(hidden_sizes), "activation": activation}
        self.dim = action_spec["dim"]
        self.net = mlp(obs_dim(obs_spec), tuple(hidden_sizes), 2 * self.dim, activation, out_gain=None)
        self.fast = NumpyMLP(self.net)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, log_std) of u, each [B, d]."""
        out = self.net(obs)
        return out[:, : self.dim], out[:, self.dim:].clamp(self.LOG_STD_MIN, self.LOG_STD_MAX)

    def sample(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Reparameterised sample a = tanh(mean + std * eps) in [-1, 1] and its log-probability [B]
        (gradients flow through both: SAC's actor and entropy losses need them)."""
        mean, log_std = self(obs)
        u = mean + log_std.exp() * torch.randn_like(mean)
        return torch.tanh(u), squashed_gaussian_log_prob(u, mean, log_std)

    def act(self, obs: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        """Actions in [-1, 1] for a batch of encoded observations through the numpy twin: tanh(mean)
        (rng None, the greedy action) or a sample with the caller's Generator."""
        out = self.fast(obs)
        mean = out[:, : self.dim]
        if rng is None:
            return np.tanh(mean)
        log_std = np.clip(out[:, self.dim:], self.LOG_STD_MIN, self.LOG_STD_MAX)
        return np.tanh(mean + np.exp(log_std) * rng.standard_normal(mean.shape)).astype(np.float32)


def squashed_gaussian_log_prob(u: torch.Tensor, mean: torch.Tensor, log_std: torch.Tensor) -> torch.Tensor:
    """log pi(tanh(u)) = log N(u; mean, std) - sum_i log(1 - tanh(u_i)^2), the change of variables through
    tanh, summed over action dimensions -> [B]. log(1 - tanh(u)^2) is computed as
    2 (log 2 - u - softplus(-2u)), exact and finite for large |u| (SB3 adds 1e-6 inside the log instead).
    The density is over the [-1, 1] action (as in SB3), not over the rescaled env action."""
    gaussian = (-0.5 * ((u - mean) / log_std.exp()).pow(2) - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)
    log_det = (2.0 * (math.log(2.0) - u - F.softplus(-2.0 * u))).sum(-1)
    return gaussian - log_det


def to_env_box(actions: np.ndarray, action_spec: dict[str, Any]) -> np.ndarray:
    """[-1, 1] actions -> the env's [low, high]: low + (a + 1) / 2 * (high - low)."""
    low, high = np.asarray(action_spec["low"], np.float32), np.asarray(action_spec["high"], np.float32)
    return (low + (np.asarray(actions, np.float32) + 1.0) * 0.5 * (high - low)).astype(np.float32)


class StateActionCritic(nn.Module):
    """Q(obs, a) for Box actions: an MLP on [obs, a] -> one value. SAC trains two of them."""

    def __init__(self, obs_spec: dict[str, Any], action_spec: dict[str, Any], hidden_sizes=(256, 256), activation="relu"):
        super().__init__()
        self.net = mlp(obs_dim(obs_spec) + action_spec["dim"], tuple(hidden_sizes), 1, activation, out_gain=None)

    def forward(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([obs, actions], dim=-1)).squeeze(-1)


def to_env_actions(actions: np.ndarray, action_spec: dict[str, Any]) -> np.ndarray:
    """Network actions -> what env.step takes: shift Discrete indices by `start`, clip Box to bounds.
    (The unclipped Gaussian sample is what gets stored and scored; clipping is the env's business.)"""
    if action_spec["kind"] == "discrete":
        return actions.astype(np.int64) + action_spec["start"]
    return np.clip(actions, np.asarray(action_spec["low"], np.float32), np.asarray(action_spec["high"], np.float32))
