"""What `train` returns and `classic eval` loads: a policy that maps one observation to one action.

    policy, history = rewardlab.classic.ppo.train(PPOConfig())
    policy.act(obs)                      # greedy action for a raw Gymnasium observation
    policy.save("my_policy.pt"); load_policy("my_policy.pt").act(obs)

Four kinds share the `Policy` interface: a Q-table (q_learning), a Q-network (dqn), an
actor-critic (reinforce, a2c, ppo) and a tanh-squashed Gaussian actor (sac). The file is a plain
torch.save of tensors, lists and strings, loaded with weights_only=True.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from rewardlab.classic.envs import encode_obs
from rewardlab.classic.networks import (
    ActorCritic,
    QNetwork,
    SquashedGaussianActor,
    to_env_actions,
    to_env_box,
)

FORMAT = "rewardlab.classic.policy/1"


class Policy(Protocol):
    kind: str

    def act(self, obs: Any, deterministic: bool = True) -> Any:
        """The action for one raw observation; deterministic=False samples (where the policy is stochastic)."""
        ...

    def save(self, path: str | Path) -> None: ...


class TabularPolicy:
    """Greedy in a Q-table indexed by Discrete observation. Ties go to the lowest action index."""

    kind = "tabular"

    def __init__(self, q_table: np.ndarray, obs_start: int = 0, action_start: int = 0):
        self.q_table = q_table
        self.obs_start = obs_start
        self.action_start = action_start

    def act(self, obs: Any, deterministic: bool = True) -> int:
        return int(self.q_table[int(obs) - self.obs_start].argmax()) + self.action_start

    def save(self, path: str | Path) -> None:
        spec = {"obs_start": self.obs_start, "action_start": self.action_start}
        _save(path, self.kind, spec, {"q_table": torch.from_numpy(np.ascontiguousarray(self.q_table))})


class QNetworkPolicy:
    """argmax_a Q(obs, a). Acting is always greedy: DQN's exploration lives in the training loop."""

    kind = "q_network"

    def __init__(self, q_network: QNetwork):
        self.q_network = q_network

    def act(self, obs: Any, deterministic: bool = True) -> int:
        spec = self.q_network.spec
        return int(self.q_network.greedy(encode_obs(np.asarray(obs)[None], spec["obs_spec"]))[0]) + spec["action_spec"]["start"]

    def save(self, path: str | Path) -> None:
        _save(path, self.kind, self.q_network.spec, self.q_network.state_dict())


class ActorCriticPolicy:
    """The actor of an ActorCritic: argmax / Gaussian mean when deterministic, a sample otherwise."""

    kind = "actor_critic"

    def __init__(self, agent: ActorCritic, rng: np.random.Generator | None = None):
        self.agent = agent
        self.rng = rng or np.random.default_rng()

    def act(self, obs: Any, deterministic: bool = True) -> Any:
        spec = self.agent.spec
        encoded = encode_obs(np.asarray(obs)[None], spec["obs_spec"])
        if deterministic:
            actions = self.agent.greedy(encoded)
        else:
            actions, _, _ = self.agent.sample(encoded, self.rng, with_value=False)
        action = to_env_actions(actions, spec["action_spec"])[0]
        return int(action) if spec["action_spec"]["kind"] == "discrete" else action

    def save(self, path: str | Path) -> None:
        _save(path, self.kind, self.agent.spec, self.agent.state_dict())


class SquashedGaussianPolicy:
    """SAC's actor: tanh(mean) rescaled to the action bounds when deterministic, a squashed sample otherwise."""

    kind = "squashed_gaussian"

    def __init__(self, actor: SquashedGaussianActor, rng: np.random.Generator | None = None):
        self.actor = actor
        self.rng = rng or np.random.default_rng()

    def act(self, obs: Any, deterministic: bool = True) -> np.ndarray:
        spec = self.actor.spec
        encoded = encode_obs(np.asarray(obs)[None], spec["obs_spec"])
        actions = self.actor.act(encoded, None if deterministic else self.rng)
        return to_env_box(actions, spec["action_spec"])[0]

    def save(self, path: str | Path) -> None:
        _save(path, self.kind, self.actor.spec, self.actor.state_dict())


def _save(path: str | Path, kind: str, spec: dict[str, Any], state: dict[str, torch.Tensor]) -> None:
    torch.save({"format": FORMAT, "kind": kind, "spec": spec, "state_dict": state}, path)


def load_policy(path: str | Path) -> Policy:
    data = torch.load(path, weights_only=True)
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ValueError(f"{path}: not a rewardlab classic policy file (expected format {FORMAT})")
    kind, spec, state = data["kind"], data["spec"], data["state_dict"]
    if kind == "tabular":
        return TabularPolicy(state["q_table"].numpy(), **spec)
    if kind == "q_network":
        q_network = QNetwork(**spec)
        q_network.load_state_dict(state)
        return QNetworkPolicy(q_network)
    if kind == "actor_critic":
        agent = ActorCritic(**spec)
        agent.load_state_dict(state)
        return ActorCriticPolicy(agent)
    if kind == "squashed_gaussian":
        actor = SquashedGaussianActor(**spec)
        actor.load_state_dict(state)
        return SquashedGaussianPolicy(actor)
    raise ValueError(f"{path}: unknown policy kind {kind!r}; valid: tabular, q_network, actor_critic, squashed_gaussian")
