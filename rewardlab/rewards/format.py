"""Shaping rewards that look at the form of a completion rather than its correctness."""

from __future__ import annotations

import re
from typing import Any

import torch

from rewardlab.algos.advantages import overlong_penalty
from rewardlab.rewards.base import RewardFn
from rewardlab.rewards.math import completion_text


def format_reward(pattern: str, name: str = "format") -> RewardFn:
    """A reward of 1.0 when the whole stripped completion matches `pattern` (re.DOTALL), else 0.0.

    `name` becomes the function's ``__name__``, which is how it shows up in logged metrics.

    >>> think_answer = format_reward(r"<think>.*?</think>\\s*<answer>.*?</answer>")
    >>> think_answer.__name__
    'format'
    >>> think_answer(completions=["<think>2+2</think> <answer>4</answer>", "4"])
    [1.0, 0.0]
    """
    try:
        compiled = re.compile(pattern, re.S)
    except re.error as exc:
        raise ValueError(f"format_reward: the pattern {pattern!r} is not a valid regular expression: {exc}") from exc

    def reward(completions: list, **kwargs: Any) -> list[float]:
        return [1.0 if compiled.fullmatch(completion_text(c).strip()) else 0.0 for c in completions]

    reward.__name__ = reward.__qualname__ = name
    reward.__doc__ = f"1.0 when the stripped completion fully matches {pattern!r}, else 0.0."
    return reward


def length_penalty(max_len: int, cache_len: int) -> RewardFn:
    """DAPO's soft overlong penalty on completion length (in tokens, from ``completion_ids``).

    With L the length and the buffer starting at ``max_len - cache_len``:
    0 while L <= max_len - cache_len; ((max_len - cache_len) - L) / cache_len inside the buffer, falling
    linearly to -1 at L = max_len; -1 beyond max_len.

    >>> penalty = length_penalty(max_len=10, cache_len=4)
    >>> penalty(completion_ids=[[0] * 6, [0] * 8, [0] * 10, [0] * 12])
    [0.0, -0.5, -1.0, -1.0]
    """
    if max_len < 1 or not 1 <= cache_len <= max_len:
        raise ValueError(
            f"length_penalty needs max_len >= 1 and 1 <= cache_len <= max_len, got max_len={max_len}, "
            f"cache_len={cache_len}; cache_len is the width of the soft-penalty buffer before max_len."
        )

    def length_penalty(completion_ids: list[list[int]], **kwargs: Any) -> list[float]:
        lengths = torch.tensor([len(ids) for ids in completion_ids], dtype=torch.float64)
        return overlong_penalty(lengths, max_len, cache_len).tolist()  # the formula the overlong_buffer setting uses

    return length_penalty
