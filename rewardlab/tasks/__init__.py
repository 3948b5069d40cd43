"""Built-in tasks: each is a dataset generator plus a verifier usable as a reward function."""

from __future__ import annotations

from typing import Any

from ..registry import Registry
from .arithmetic import ArithmeticTask, answer_text, arithmetic_reward
from .preference import PreferenceTask, gold_reward, gold_score, win_rate

TASKS: Registry = Registry("task")
TASKS.add("arithmetic", ArithmeticTask)
TASKS.add("preference", PreferenceTask)


def make_task(name: str, **options: Any):
    """Build a task by name with its options (e.g. make_task("arithmetic", max_digits=3))."""
    task_cls = TASKS[name]
    try:
        return task_cls(**options)
    except TypeError as err:
        import dataclasses

        valid = [f.name for f in dataclasses.fields(task_cls)] if dataclasses.is_dataclass(task_cls) else []
        raise ValueError(f"bad option for task {name!r}: {err}; valid options: {valid}") from None


__all__ = [
    "TASKS",
    "ArithmeticTask",
    "PreferenceTask",
    "answer_text",
    "arithmetic_reward",
    "gold_reward",
    "gold_score",
    "make_task",
    "win_rate",
]
