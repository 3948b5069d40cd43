"""Built-in tasks: each is a dataset generator plus a verifier usable as a reward function."""

from __future__ import annotations

from typing import Any

from ..registry import Registry
from .arithmetic import ArithmeticTask, answer_text, arithmetic_reward
from .chain import ChainTask, chain_reward
from .code import CodeTask, code_task_reward
from .countdown import CountdownTask, countdown_reward, is_solution, parse_expression
from .preference import PreferenceTask, gold_reward, gold_score, win_rate

TASKS: Registry = Registry("task")
TASKS.add("arithmetic", ArithmeticTask)
TASKS.add("preference", PreferenceTask)
TASKS.add("countdown", CountdownTask)
TASKS.add("code", CodeTask)
TASKS.add("chain", ChainTask)


def make_task(name: str, **options: Any):
    """Build a task by name with its options (e.g. make_task("arithmetic", max_digits=3))."""
    import dataclasses

    from ..config import ConfigError

    task_cls = TASKS[name]
    try:
        return task_cls(**options)
    except TypeError as err:
        valid = [f.name for f in dataclasses.fields(task_cls)] if dataclasses.is_dataclass(task_cls) else []
        raise ConfigError(f"bad option for task {name!r}: {err}; valid options: {valid}") from None
    except ValueError as err:  # an option out of range, checked by the task itself
        raise ConfigError(f"task_options for task {name!r}: {err}") from None


__all__ = [
    "TASKS",
    "ArithmeticTask",
    "ChainTask",
    "CodeTask",
    "CountdownTask",
    "PreferenceTask",
    "answer_text",
    "arithmetic_reward",
    "chain_reward",
    "code_task_reward",
    "countdown_reward",
    "gold_reward",
    "gold_score",
    "is_solution",
    "make_task",
    "parse_expression",
    "win_rate",
]
