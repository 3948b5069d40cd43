"""Baseline agents that play the text environments through the same episode runner as the policy.

An agent has `act(episodes) -> list[str]`: one turn of text (rationale + action form) per unfinished
episode. Baselines read the environment's state from `episode.env` / `episode.info`; the language-model
policy (`rollout.episodes.PolicyAgent`) reads the conversation instead.

    bandits:      random, ucb1, epsilon_greedy(E), demonstrator(P)
    tic-tac-toe:  random, minimax, mcts(N), heuristic, demonstrator(P)

`demonstrator(P)` is the weak, noisy teacher of the cold start: its rationale is right (the UCB1 arm;
the win/block/center/corner rule) but its action follows the rationale only with probability P, and
is otherwise a habit (the greedy or most frequent arm) or a random legal move.
"""

from __future__ import annotations

import re
from typing import Any, Protocol

import numpy as np

from .bandits import BanditEnv, argmax_set, ucb1_arms
from .tictactoe import TicTacToeEnv, heuristic_move, mcts_move, minimax_moves


class Agent(Protocol):
    def act(self, episodes: list[Any]) -> list[str]:
        """One turn of text per episode (each has .env, the TextEnv, and .info, its latest info)."""
        ...


def _bandit(env: Any, agent: str) -> BanditEnv:
    base = env.unwrapped
    if not isinstance(base, BanditEnv):
        raise ValueError(f"the {agent} agent plays bandits only; this env is {type(base).__name__}")
    return base


def _tictactoe(env: Any, agent: str) -> TicTacToeEnv:
    base = env.unwrapped
    if not isinstance(base, TicTacToeEnv):
        raise ValueError(f"the {agent} agent plays tic-tac-toe only; this env is {type(base).__name__}")
    return base


class RandomAgent:
    """A uniformly random legal action (any environment)."""

    def __init__(self, seed: int = 0):
        self.rng = np.random.default_rng(seed)

    def act(self, episodes: list[Any]) -> list[str]:
        out = []
        for ep in episodes:
            action = int(self.rng.choice(ep.env.unwrapped.legal_actions()))
            out.append(ep.env.unwrapped.format_action(action, f"any {action}"))
        return out


class UCB1Agent:
    """UCB1 (Auer et al. 2002): every arm once, then argmax of mean + sqrt(2 ln t / n); ties at random.
    On a contextual bandit the statistics are the current context's, i.e. one UCB1 per context."""

    def __init__(self, seed: int = 0):
        self.rng = np.random.default_rng(seed)

    def act(self, episodes: list[Any]) -> list[str]:
        out = []
        for ep in episodes:
            env = _bandit(ep.env, "ucb1")
            arm = int(self.rng.choice(ucb1_arms(env.counts, env.means, int(env.counts.sum())))) + 1
            out.append(env.format_action(arm, f"ucb {arm}"))
        return out


class EpsilonGreedyAgent:
    """Every arm once, then the empirically best arm, or with probability epsilon a random arm."""

    def __init__(self, epsilon: float = 0.1, seed: int = 0):
        if not 0 <= epsilon <= 1:
            raise ValueError(f"epsilon must be in [0, 1], got {epsilon}")
        self.epsilon, self.rng = epsilon, np.random.default_rng(seed)

    def act(self, episodes: list[Any]) -> list[str]:
        out = []
        for ep in episodes:
            env = _bandit(ep.env, "epsilon_greedy")
            untried = np.flatnonzero(env.counts == 0)
            if len(untried):
                arm = int(self.rng.choice(untried))
            elif self.rng.random() < self.epsilon:
                arm = int(self.rng.integers(env.arms))
            else:
                arm = int(self.rng.choice(argmax_set(env.means, env.counts > 0)))
            out.append(env.format_action(arm + 1, f"greedy {arm + 1}"))
        return out


class MinimaxAgent:
    """The perfect tic-tac-toe player (a random choice among optimal moves)."""

    def __init__(self, seed: int = 0):
        self.rng = np.random.default_rng(seed)

    def act(self, episodes: list[Any]) -> list[str]:
        out = []
        for ep in episodes:
            env = _tictactoe(ep.env, "minimax")
            cell = int(self.rng.choice(minimax_moves(env.board, env.mark))) + 1
            out.append(env.format_action(cell, f"best {cell}"))
        return out


class MCTSAgent:
    """UCT tree search with `simulations` random playouts per move."""

    def __init__(self, simulations: int = 100, seed: int = 0):
        if simulations < 1:
            raise ValueError(f"mcts needs >= 1 simulation, got {simulations}")
        self.simulations, self.rng = simulations, np.random.default_rng(seed)

    def act(self, episodes: list[Any]) -> list[str]:
        out = []
        for ep in episodes:
            env = _tictactoe(ep.env, "mcts")
            cell = mcts_move(env.board, env.mark, self.simulations, self.rng) + 1
            out.append(env.format_action(cell, f"search {cell}"))
        return out


class HeuristicAgent:
    """Tic-tac-toe rule of thumb: win > block > center > corner > side."""

    def __init__(self, seed: int = 0):
        self.rng = np.random.default_rng(seed)

    def act(self, episodes: list[Any]) -> list[str]:
        out = []
        for ep in episodes:
            env = _tictactoe(ep.env, "heuristic")
            name, cell = heuristic_move(env.board, env.mark, self.rng)
            out.append(env.format_action(cell + 1, f"{name} {cell + 1}"))
        return out


class DemonstratorAgent:
    """The cold start's teacher: a right rationale, an action that follows it with probability `follow`.

    Bandits: the rationale names the UCB1 arm ("ucb 3"; the lowest-numbered one on ties); otherwise the action is the greedy arm or the
    most frequent arm (each half the time; a random arm before any pull). Tic-tac-toe: the rationale is
    the rule-of-thumb move ("block 7"); otherwise the action is a random legal cell.
    """

    def __init__(self, follow: float = 0.5, seed: int | list[int] = 0):  # a list: a stream no int seed gives (numpy SeedSequence)
        if not 0 <= follow <= 1:
            raise ValueError(f"demonstrator follow probability must be in [0, 1], got {follow}")
        self.follow, self.rng = follow, np.random.default_rng(seed)

    def act(self, episodes: list[Any]) -> list[str]:
        return [self._turn(ep.env.unwrapped) for ep in episodes]

    def _turn(self, env: Any) -> str:
        rng = self.rng
        if isinstance(env, BanditEnv):
            # ties (the untried arms at the start) go to the lowest-numbered arm: a target a small model can
            # learn, where a random pick among the tied arms only teaches it to spread its probability
            right = ucb1_arms(env.counts, env.means, int(env.counts.sum()))[0]
            arm = right
            if rng.random() >= self.follow:
                tried = env.counts > 0
                habit = argmax_set(env.means, tried) if rng.random() < 0.5 else argmax_set(env.counts, tried)
                arm = int(rng.choice(habit)) if habit else int(rng.integers(env.arms))
            return env.format_action(arm + 1, f"ucb {right + 1}")
        if isinstance(env, TicTacToeEnv):
            name, cell = heuristic_move(env.board, env.mark, rng)
            move = cell if rng.random() < self.follow else int(rng.choice([c - 1 for c in env.legal_actions()]))
            return env.format_action(move + 1, f"{name} {cell + 1}")
        raise ValueError(f"the demonstrator knows bandits and tic-tac-toe; this env is {type(env).__name__}")


AGENT_FORMS = "random | ucb1 | epsilon_greedy(E) | minimax | mcts(N) | heuristic | demonstrator(P)"


def make_agent(name: str, seed: int = 0) -> Agent:
    """A baseline agent by name, e.g. "ucb1", "epsilon_greedy(0.1)", "mcts(200)", "demonstrator(0.5)"."""
    match = re.fullmatch(r"\s*([a-z_0-9]+)\s*(?:\(\s*([0-9.]+)\s*\))?\s*", str(name).lower())
    if not match:
        raise ValueError(f"cannot read agent {name!r}; use {AGENT_FORMS}")
    kind, arg = match.group(1), match.group(2)
    if kind == "random":
        return RandomAgent(seed)
    if kind == "ucb1":
        return UCB1Agent(seed)
    if kind == "epsilon_greedy":
        return EpsilonGreedyAgent(float(arg) if arg else 0.1, seed)
    if kind == "minimax":
        return MinimaxAgent(seed)
    if kind == "mcts":
        return MCTSAgent(int(float(arg)) if arg else 100, seed)
    if kind == "heuristic":
        return HeuristicAgent(seed)
    if kind == "demonstrator":
        return DemonstratorAgent(float(arg) if arg else 0.5, seed)
    raise ValueError(f"unknown agent {name!r}; use {AGENT_FORMS}")
