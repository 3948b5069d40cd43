"""Text tic-tac-toe against a random, minimax (perfect) or MCTS opponent.

The observation is the board as 9 characters, row by row: "x", "o", or the cell's number 1..9 where it
is empty ("x2o4x6789"), so a free cell can be named by copying it. The policy answers with a rationale and `move: N`, e.g. "win 3 move: 3". An unparseable move
or a move onto an occupied cell ends the game as a loss plus `invalid_penalty`.

Rewards (policy's view): win_reward / draw_reward / loss_reward at the end, 0 on other turns.
"""

from __future__ import annotations

import functools
import math
import re
from typing import Any

import numpy as np

from .base import TextEnv

LINES = ((0, 1, 2), (3, 4, 5), (6, 7, 8), (0, 3, 6), (1, 4, 7), (2, 5, 8), (0, 4, 8), (2, 4, 6))
EMPTY = "."


def other(mark: str) -> str:
    return "o" if mark == "x" else "x"


def winner(board: str) -> str | None:
    """"x" or "o" if that mark has three in a line, else None."""
    for a, b, c in LINES:
        if board[a] != EMPTY and board[a] == board[b] == board[c]:
            return board[a]
    return None


def empty_cells(board: str) -> list[int]:
    """Free cells, 0-based."""
    return [i for i, c in enumerate(board) if c == EMPTY]


def is_over(board: str) -> bool:
    return winner(board) is not None or EMPTY not in board


def play(board: str, cell: int, mark: str) -> str:
    if board[cell] != EMPTY:
        raise ValueError(f"cell {cell + 1} is taken in {board!r}")
    return board[:cell] + mark + board[cell + 1 :]


def board_observation(board: str) -> str:
    """"x.o......" -> "x2o456789": empty cells show their number."""
    return "".join(str(i + 1) if c == EMPTY else c for i, c in enumerate(board))


def to_move(board: str) -> str:
    """x moves first, so x is to move when the counts are equal."""
    return "x" if board.count("x") == board.count("o") else "o"


@functools.cache
def minimax_value(board: str, mark: str) -> int:
    """Game value for `mark`, who is to move, under perfect play: > 0 win, 0 draw, < 0 loss. A win counts
    1 + the cells still empty, so the fastest win (and the slowest loss) is preferred."""
    win = winner(board)
    if win is not None:
        score = 1 + board.count(EMPTY)
        return score if win == mark else -score
    cells = empty_cells(board)
    if not cells:
        return 0
    return max(-minimax_value(play(board, c, mark), other(mark)) for c in cells)


def minimax_moves(board: str, mark: str) -> list[int]:
    """All optimal cells (0-based) for `mark` to move on `board`."""
    values = {c: -minimax_value(play(board, c, mark), other(mark)) for c in empty_cells(board)}
    best = max(values.values())
    return [c for c, v in values.items() if v == best]


def threats(board: str, mark: str) -> list[int]:
    """Cells where `mark` would complete a line."""
    return [c for c in empty_cells(board) if winner(play(board, c, mark)) == mark]


def heuristic_move(board: str, mark: str, rng: np.random.Generator) -> tuple[str, int]:
    """The rule-of-thumb move and its name: win > block > center > corner > side (0-based cell)."""
    for name, cells in (("win", threats(board, mark)), ("block", threats(board, other(mark)))):
        if cells:
            return name, int(rng.choice(cells))
    free = empty_cells(board)
    if 4 in free:
        return "center", 4
    corners = [c for c in (0, 2, 6, 8) if c in free]
    if corners:
        return "corner", int(rng.choice(corners))
    return "side", int(rng.choice(free))


def mcts_move(board: str, mark: str, simulations: int, rng: np.random.Generator, exploration: float = 1.4) -> int:
    """UCT with random playouts from `board`, `mark` to move; returns the most visited cell (0-based)."""
    visits: dict[str, int] = {board: 0}
    wins: dict[str, float] = {}  # per child state: score for the player who moved into it

    def ucb_child(state: str) -> str:
        mover, parent_n = to_move(state), visits[state]
        best, best_score = "", -math.inf
        for cell in empty_cells(state):
            child = play(state, cell, mover)
            n = visits.get(child, 0)
            score = math.inf if n == 0 else wins[child] / n + exploration * math.sqrt(math.log(parent_n) / n)
            if score > best_score:
                best, best_score = child, score
        return best

    for _ in range(simulations):
        path, state = [board], board
        while not is_over(state) and state in visits and visits[state] > 0:  # selection
            state = ucb_child(state)
            path.append(state)
        playout = state
        while not is_over(playout):  # random playout
            playout = play(playout, int(rng.choice(empty_cells(playout))), to_move(playout))
        win = winner(playout)
        for node in path:  # backup: credit the player who made the move into `node`
            visits[node] = visits.get(node, 0) + 1
            mover = other(to_move(node))
            wins[node] = wins.get(node, 0.0) + (1.0 if win == mover else 0.5 if win is None else 0.0)
    children = {c: visits.get(play(board, c, mark), 0) for c in empty_cells(board)}
    top = max(children.values())
    return int(rng.choice([c for c, n in children.items() if n == top]))


OPPONENT_FORMS = "random | minimax | mcts(N) | heuristic, or several joined by ',' (one is drawn per episode)"


def parse_opponents(spec: str) -> list[tuple[str, int]]:
    """"random,mcts(50)" -> [("random", 0), ("mcts", 50)]."""
    parsed = []
    for part in str(spec).split(","):
        part = part.strip().lower()
        match = re.fullmatch(r"mcts\((\d+)\)", part)
        if match and int(match.group(1)) > 0:
            parsed.append(("mcts", int(match.group(1))))
        elif part in ("random", "minimax", "heuristic"):
            parsed.append((part, 0))
        else:
            raise ValueError(f"unknown tic-tac-toe opponent {part!r}; use {OPPONENT_FORMS}")
    return parsed


def opponent_move(kind: str, simulations: int, board: str, mark: str, rng: np.random.Generator) -> int:
    if kind == "random":
        return int(rng.choice(empty_cells(board)))
    if kind == "minimax":
        return int(rng.choice(minimax_moves(board, mark)))
    if kind == "heuristic":
        return heuristic_move(board, mark, rng)[1]
    return mcts_move(board, mark, simulations, rng)


class TicTacToeEnv(TextEnv):
    """Tic-tac-toe; the policy plays x (first) or o (second) against `opponent`.

    opponent: "random", "minimax", "mcts(N)" (N playouts per move), "heuristic", or a comma-separated
    list, one drawn per episode. first: "policy", "opponent" or "random" (drawn per episode).
    """

    action_template = "move: {}"

    def __init__(
        self,
        opponent: str = "random",
        first: str = "policy",
        win_reward: float = 1.0,
        draw_reward: float = 0.0,
        loss_reward: float = -1.0,
        invalid_penalty: float = -1.0,
        context: str | None = None,
    ):
        super().__init__(invalid_penalty=invalid_penalty, end_on_invalid=True, context=context)
        if first not in ("policy", "opponent", "random"):
            raise ValueError(f"first={first!r} is not valid; use policy, opponent or random")
        self.opponents = parse_opponents(opponent)
        self.first = first
        self.rewards = {"win": float(win_reward), "draw": float(draw_reward), "loss": float(loss_reward)}
        self.board = EMPTY * 9
        self.mark = "x"
        self.opponent = self.opponents[0]

    @property
    def opponent_name(self) -> str:
        kind, n = self.opponent
        return f"mcts({n})" if kind == "mcts" else kind

    def _info(self, **extra: Any) -> dict[str, Any]:
        return {"board": self.board, "mark": self.mark, "legal": self.legal_actions(), "opponent": self.opponent_name, **extra}

    def _reset(self) -> tuple[str, dict[str, Any]]:
        rng = self.np_random
        self.opponent = self.opponents[int(rng.integers(len(self.opponents)))]
        policy_first = self.first == "policy" or (self.first == "random" and rng.random() < 0.5)
        self.mark = "x" if policy_first else "o"
        self.board = EMPTY * 9
        if not policy_first:
            self.board = play(self.board, self._opponent_move(self.board, "x"), "x")
        instructions = f"tic-tac-toe, you are {self.mark}. cells 1-9 by rows. say why, then move: N"
        return board_observation(self.board), self._info(instructions=instructions)

    def _opponent_move(self, board: str, mark: str) -> int:
        return opponent_move(*self.opponent, board, mark, self.np_random)

    def legal_actions(self) -> list[int]:
        return [c + 1 for c in empty_cells(self.board)]

    def _end(self, outcome: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        return board_observation(self.board), self.rewards[outcome], True, False, self._info(outcome=outcome)

    def _chances(self, action: int | None) -> dict[str, bool]:
        """What the board offered before the policy's move and whether the move used it: `missed_win` (a
        line could be completed and was not) and `missed_block` (no win, the opponent threatened a line and
        the move did not block it). An invalid move misses whatever was there."""
        cell = None if action is None else action - 1
        wins, blocks = threats(self.board, self.mark), threats(self.board, other(self.mark))
        return {"missed_win": bool(wins) and cell not in wins,
                "missed_block": not wins and bool(blocks) and cell not in blocks}

    def _step(self, action: int) -> tuple[str, float, bool, bool, dict[str, Any]]:
        chances = self._chances(action)
        obs, reward, terminated, truncated, info = self._play(action)
        return obs, reward, terminated, truncated, {**info, **chances}

    def _play(self, action: int) -> tuple[str, float, bool, bool, dict[str, Any]]:
        self.board = play(self.board, action - 1, self.mark)
        if winner(self.board) == self.mark:
            return self._end("win")
        if EMPTY not in self.board:
            return self._end("draw")
        opp = other(self.mark)
        self.board = play(self.board, self._opponent_move(self.board, opp), opp)
        if winner(self.board) == opp:
            return self._end("loss")
        if EMPTY not in self.board:
            return self._end("draw")
        return board_observation(self.board), 0.0, False, False, self._info()

    def _invalid_step(self) -> tuple[str, float, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self._end("loss")
        return obs, reward, terminated, truncated, {**info, **self._chances(None)}

    def render(self) -> str:
        rows = [" ".join(self.board[r * 3 : r * 3 + 3]) for r in range(3)]
        return "\n".join(rows)

    @staticmethod
    def summarize(step_infos: list[dict[str, Any]]) -> dict[str, float]:
        outcome = step_infos[-1].get("outcome") if step_infos else None
        return {
            "win": float(outcome == "win"),
            "draw": float(outcome == "draw"),
            "loss": float(outcome == "loss"),
            "non_loss": float(outcome in ("win", "draw")),
            "invalid_rate": sum(i.get("invalid") is not None for i in step_infos) / max(1, len(step_infos)),
            "invalid_game": float(any(i.get("invalid") is not None for i in step_infos)),
            # share of games with at least one missed win / missed block (see _chances)
            "missed_win": float(any(i.get("missed_win") for i in step_infos)),
            "missed_block": float(any(i.get("missed_block") for i in step_infos)),
            "score": float(outcome == "win"),
        }
