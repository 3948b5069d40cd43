"""TextEnv: a Gymnasium environment whose observations and actions are text.

Each turn the policy writes a short rationale and then its action in a fixed form (`move: 5`,
`<arm>3</arm>`). The environment parses the action; text it cannot parse, or an action the rules do
not allow, gets `invalid_penalty` and is counted (`info["invalid"]` says which of the two it was).

Subclasses implement the rules on integer actions:

    _reset() -> (obs_text, info)             after gymnasium seeded self.np_random
    legal_actions() -> list[int]
    _step(action: int) -> (obs_text, reward, terminated, truncated, info)
    _invalid_step() -> (obs_text, reward, terminated, truncated, info)   what an invalid turn costs
    summarize(step_infos: list[dict]) -> dict[str, float]               one episode's metrics
"""

from __future__ import annotations

import re
import string
from typing import Any

import gymnasium as gym
from gymnasium import spaces

# Rationale: the first "word number" pair before the action, e.g. "win 3" in "win 3 move: 3".
RATIONALE_PATTERN = re.compile(r"([a-z]+)\s*(-?\d+)", re.IGNORECASE)


def _number(digits: str) -> int | None:
    """The integer a matched "-?digits" names, or None when it is too long for Python to convert (over 4300
    digits): such a turn counts as unparseable instead of raising in the middle of a rollout."""
    try:
        return int(digits)
    except ValueError:
        return None


class TextEnv(gym.Env):
    """Base class of the text environments. `reset(seed) -> (obs, info)`;
    `step(action_text) -> (obs, reward, terminated, truncated, info)`.

    `info` after reset carries "instructions" (the system message for this episode). `info` after
    a step carries "action" (the parsed int or None), "invalid" (None, "unparseable" or "illegal") and
    "rationale" (the number the rationale names, or None).
    """

    metadata = {"render_modes": ["ansi"]}
    action_pattern: re.Pattern[str] = re.compile(r"move:\s*(-?\d+)", re.IGNORECASE)
    action_template: str = "move: {}"
    context: str = "full"
    """"full": the conversation grows turn by turn; "last": each turn sees the instructions and the current
    observation only (for environments whose observation already summarises the history)."""

    def __init__(self, invalid_penalty: float = -1.0, end_on_invalid: bool = True, context: str | None = None):
        if context is not None:
            if context not in ("full", "last"):
                raise ValueError(f"context={context!r} is not valid; use 'full' (growing conversation) or 'last'")
            self.context = context
        self.invalid_penalty = float(invalid_penalty)
        self.end_on_invalid = end_on_invalid
        self.observation_space = spaces.Text(max_length=4096, charset=string.printable)
        self.action_space = spaces.Text(max_length=4096, charset=string.printable)
        self.invalid_actions = 0
        self.done = True

    # --- parsing ------------------------------------------------------------------------------------

    def parse_action(self, text: str) -> int | None:
        """The action number of the LAST action-form match in `text` (a model that corrects itself wins),
        or None when there is none."""
        matches = self.action_pattern.findall(text)
        return _number(matches[-1]) if matches else None

    def parse_rationale(self, text: str) -> int | None:
        """The number the rationale names: the first `word number` before the action form."""
        match = self.action_pattern.search(text)
        head = text[: match.start()] if match else text
        found = RATIONALE_PATTERN.search(head)
        return _number(found.group(2)) if found else None

    def format_action(self, action: int, rationale: str = "") -> str:
        """The text a well-formed turn has: rationale, then the action form."""
        act = self.action_template.format(action)
        return f"{rationale} {act}" if rationale else act

    # --- Gymnasium API ------------------------------------------------------------------------------

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[str, dict[str, Any]]:
        super().reset(seed=seed)
        self.invalid_actions = 0
        self.done = False
        return self._reset()

    def step(self, action_text: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        if self.done:
            raise RuntimeError("step() called on a finished episode; call reset() first")
        if not isinstance(action_text, str):
            raise TypeError(f"{type(self).__name__}.step expects the policy's text, got {type(action_text).__name__}")
        action = self.parse_action(action_text)
        rationale = self.parse_rationale(action_text)
        if action is None or action not in self.legal_actions():
            self.invalid_actions += 1
            obs, reward, terminated, truncated, info = self._invalid_step()
            if self.end_on_invalid:
                terminated = True
            reward += self.invalid_penalty
            info.update(action=action, invalid="unparseable" if action is None else "illegal", rationale=rationale)
        else:
            obs, reward, terminated, truncated, info = self._step(action)
            info.update(action=action, invalid=None, rationale=rationale)
        self.done = terminated or truncated
        return obs, float(reward), terminated, truncated, info

    # --- for subclasses -----------------------------------------------------------------------------

    def _reset(self) -> tuple[str, dict[str, Any]]:
        raise NotImplementedError

    def legal_actions(self) -> list[int]:
        raise NotImplementedError

    def _step(self, action: int) -> tuple[str, float, bool, bool, dict[str, Any]]:
        raise NotImplementedError

    def _invalid_step(self) -> tuple[str, float, bool, bool, dict[str, Any]]:
        raise NotImplementedError

    @staticmethod
    def summarize(step_infos: list[dict[str, Any]]) -> dict[str, float]:
        """Metrics of one episode from its step infos. The base counts invalid turns only. A "score" (higher is
        better) sets what training's evaluation reports; without one it reports the mean episode return."""
        return {"invalid_rate": sum(i.get("invalid") is not None for i in step_infos) / max(1, len(step_infos))}
