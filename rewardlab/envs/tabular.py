"""Discrete views of the text environments, so tabular agents (rewardlab classic q_learning) play them too.

    rewardlab classic q_learning --env rewardlab/TicTacToeTabular-v0 total_steps=200000

TabularTicTacToe: observation = the board as a base-3 number (cell i contributes 3^i times 0 empty,
1 the agent's mark, 2 the opponent's), Discrete(3^9); action = cell index 0..8, Discrete(9).
TabularBandit: a single state, Discrete(1); action = arm index, Discrete(K). With `means` fixed the
instance is the same every episode; without, each episode draws new arms (Q then learns arm averages).
The wrapper turns the integer action into the text form and passes the text env's reward through.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
from gymnasium import spaces

from .bandits import BanditEnv
from .tictactoe import TicTacToeEnv


def board_index(board: str, mark: str) -> int:
    """"x.o......" seen by x -> 1 * 3^0 + 2 * 3^2 = 19."""
    digit = {".": 0, mark: 1, "o" if mark == "x" else "x": 2}
    return sum(digit[c] * 3**i for i, c in enumerate(board))


class TabularTicTacToe(gym.Wrapper):
    def __init__(self, env: TicTacToeEnv):
        super().__init__(env)
        self.observation_space = spaces.Discrete(3**9)
        self.action_space = spaces.Discrete(9)

    def _index(self) -> int:
        base = self.env.unwrapped
        return board_index(base.board, base.mark)

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[int, dict[str, Any]]:
        _, info = self.env.reset(seed=seed, options=options)
        return self._index(), info

    def step(self, action: int) -> tuple[int, float, bool, bool, dict[str, Any]]:
        _, reward, terminated, truncated, info = self.env.step(self.env.unwrapped.format_action(int(action) + 1))
        return self._index(), reward, terminated, truncated, info


class TabularBandit(gym.Wrapper):
    def __init__(self, env: BanditEnv):
        super().__init__(env)
        self.observation_space = spaces.Discrete(1)
        self.action_space = spaces.Discrete(env.unwrapped.arms)

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[int, dict[str, Any]]:
        _, info = self.env.reset(seed=seed, options=options)
        return 0, info

    def step(self, action: int) -> tuple[int, float, bool, bool, dict[str, Any]]:
        _, reward, terminated, truncated, info = self.env.step(self.env.unwrapped.format_action(int(action) + 1))
        return 0, reward, terminated, truncated, info


def make_tictactoe_tabular(**options: Any) -> TabularTicTacToe:
    return TabularTicTacToe(TicTacToeEnv(**options))


def make_bandit_tabular(**options: Any) -> TabularBandit:
    return TabularBandit(BanditEnv(**options))
