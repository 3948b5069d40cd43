"""`rewardlab play tictactoe --model DIR`: play tic-tac-toe against a trained model (or a baseline) in the terminal.

The model sits in the environment's policy seat and you take the opponent's: `HumanTicTacToe` asks you
for the opponent's moves, so the game runs through the same TextEnv and episode runner as training and
evaluation.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..rollout.episodes import run_episodes
from .tictactoe import TicTacToeEnv, empty_cells, other


def board_text(board: str) -> str:
    """The board with free cells numbered, three rows."""
    cells = [c if c != "." else str(i + 1) for i, c in enumerate(board)]
    return "\n".join(" " + " | ".join(cells[r * 3 : r * 3 + 3]) for r in range(3))


class HumanTicTacToe(TicTacToeEnv):
    """TicTacToeEnv whose opponent is a person: `read(prompt) -> str` gets the move, `write` shows the board."""

    def __init__(self, read: Callable[[str], str], write: Callable[[str], None], **kwargs: Any):
        super().__init__(**kwargs)
        self.read, self.write = read, write

    def _opponent_move(self, board: str, mark: str) -> int:
        self.write(board_text(board))
        free = empty_cells(board)
        while True:
            answer = self.read(f"your move ({mark}), 1-9: ").strip()
            if answer.isdigit() and int(answer) - 1 in free:
                return int(answer) - 1
            self.write(f"{answer!r} is not a free cell; free cells: {', '.join(str(c + 1) for c in free)}")


def play_tictactoe(agent: Any, human_first: bool = False, seed: int = 0,
                   read: Callable[[str], str] = input, write: Callable[[str], None] = print) -> str:
    """One game in the terminal; returns the outcome from the model's side ("win", "draw", "loss")."""
    env = HumanTicTacToe(read, write, first="opponent" if human_first else "policy")
    episode = run_episodes(lambda: env, [seed], agent)[0]
    for turn in episode.turns:
        write(f"model: {turn.text!r}")
    last = episode.turns[-1]
    write(board_text(env.board))
    if last.info.get("invalid"):
        write(f"the model's last move was {last.info['invalid']}, so it forfeits")
    outcome = last.info.get("outcome", "loss")
    verdict = {"win": "the model wins", "loss": "you win", "draw": "draw"}[outcome]
    write(f"{verdict} (model plays {env.mark}, you play {other(env.mark)})")
    return outcome
