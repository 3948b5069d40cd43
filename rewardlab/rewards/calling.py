"""The keyword arguments a reward function is called with, built in one place for training, the pre-flight
check and evaluation (TRL's convention: prompts, completions, completion_ids, and the dataset's other columns;
`RewardFunctions` adds trainer_state, log_extra and log_metric).

A chat prompt (a list of messages) gets its completion as a list with one assistant message; a plain prompt
gets the plain text. The dataset's own `prompt` and `completion` columns (and a `completion_ids` one) are held
back, as TRL holds them back: the reward sees the prompt as `prompts` and the sampled completion as
`completions`, never a demonstration written in the data.
"""

from __future__ import annotations

from typing import Any

from ..data import columns

HELD_BACK = ("prompt", "completion", "completion_ids")  # dataset columns a reward function is not given


def completions_for(records: list[dict], texts: list[str]) -> list:
    """Plain completions for plain prompts, assistant messages for chat prompts (TRL's convention)."""
    return [t if isinstance(r["prompt"], str) else [{"role": "assistant", "content": t}] for r, t in zip(records, texts)]


def reward_kwargs(records: list[dict], texts: list[str], completion_ids: list[list[int]]) -> dict[str, Any]:
    """{prompts, completions, completion_ids, columns} for one reward call over `records` (one row per
    completion) and their completions' text and token ids."""
    return {
        "prompts": [r["prompt"] for r in records],
        "completions": completions_for(records, texts),
        "completion_ids": completion_ids,
        "columns": columns(records, exclude=HELD_BACK),
    }
