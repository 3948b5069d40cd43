"""Text environments (Gymnasium API): bandits, contextual bandits, tic-tac-toe; baseline agents.

Registered Gymnasium ids (importing rewardlab.envs registers them):

    rewardlab/Bandit-v0             BanditEnv (arms, horizon, distribution bernoulli|gaussian, ...)
    rewardlab/ContextualBandit-v0   ContextualBanditEnv (contexts, plus the bandit options)
    rewardlab/TicTacToe-v0          TicTacToeEnv (opponent random|minimax|mcts(N), first, ...)
    rewardlab/TicTacToeTabular-v0   Discrete wrapper for tabular Q-learning (rewardlab classic q_learning)
    rewardlab/BanditTabular-v0      Discrete wrapper of a bandit (one state)

`make_text_env` also takes the short names (bandit, contextual_bandit, tictactoe) and a user's
TextEnv subclass by import path, "package.module:ClassName".
"""

from __future__ import annotations

import importlib
from typing import Any

import gymnasium as gym

from ..config import ConfigError
from .bandits import BanditEnv, ContextualBanditEnv, ucb1_arms
from .base import TextEnv
from .baselines import AGENT_FORMS, Agent, DemonstratorAgent, make_agent
from .tictactoe import TicTacToeEnv, minimax_moves, minimax_value, winner

ENV_IDS = {
    "bandit": "rewardlab/Bandit-v0",
    "contextual_bandit": "rewardlab/ContextualBandit-v0",
    "tictactoe": "rewardlab/TicTacToe-v0",
}

_REGISTRATIONS = {
    "rewardlab/Bandit-v0": "rewardlab.envs.bandits:BanditEnv",
    "rewardlab/ContextualBandit-v0": "rewardlab.envs.bandits:ContextualBanditEnv",
    "rewardlab/TicTacToe-v0": "rewardlab.envs.tictactoe:TicTacToeEnv",
    "rewardlab/TicTacToeTabular-v0": "rewardlab.envs.tabular:make_tictactoe_tabular",
    "rewardlab/BanditTabular-v0": "rewardlab.envs.tabular:make_bandit_tabular",
}
for _id, _entry in _REGISTRATIONS.items():
    if _id not in gym.registry:
        gym.register(_id, entry_point=_entry, disable_env_checker=True)


def make_text_env(name: str, options: dict[str, Any] | None = None) -> TextEnv:
    """A TextEnv from a short name, a registered Gymnasium id, or "package.module:ClassName"."""
    options = dict(options or {})
    if ":" in name and "/" not in name.split(":")[0]:
        module_name, _, attr = name.partition(":")
        try:
            cls = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as err:
            raise ConfigError(f"cannot import environment {name!r} ({err}); use 'package.module:ClassName'") from None
        try:
            env = cls(**options)
        except (TypeError, ValueError) as err:
            raise ConfigError(f"bad option for environment {name!r}: {err}") from None
    else:
        env_id = ENV_IDS.get(name, name)
        if env_id not in gym.registry:
            raise ConfigError(
                f"unknown environment {name!r}; use one of {', '.join(ENV_IDS)}, a registered Gymnasium id "
                "(e.g. rewardlab/TicTacToe-v0), or 'package.module:ClassName' for your own TextEnv"
            )
        try:
            env = gym.make(env_id, **options)
        except (TypeError, ValueError) as err:
            raise ConfigError(f"bad option for environment {name!r}: {err}") from None
    if not isinstance(env.unwrapped, TextEnv):
        raise ConfigError(
            f"environment {name!r} is a {type(env.unwrapped).__name__}, not a rewardlab.envs.TextEnv; "
            "text environments take and return text"
        )
    return env


__all__ = [
    "AGENT_FORMS",
    "ENV_IDS",
    "Agent",
    "BanditEnv",
    "ContextualBanditEnv",
    "DemonstratorAgent",
    "TextEnv",
    "TicTacToeEnv",
    "make_agent",
    "make_text_env",
    "minimax_moves",
    "minimax_value",
    "ucb1_arms",
    "winner",
]
