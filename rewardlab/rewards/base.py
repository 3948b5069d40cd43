"""The reward-function protocol and the weighted combination the trainers call.

A reward function is a plain callable with TRL's signature, so functions written for TRL port unchanged:

    def my_reward(completions, answer, **kwargs) -> list[float | None]: ...

It is called as ``fn(prompts=..., completions=..., completion_ids=..., **dataset_columns)`` and must
accept the keyword arguments it does not use through ``**kwargs``. It returns one value per completion;
``None`` means "this function does not apply to this sample" (e.g. a code reward on a math prompt).

`RewardFunctions` calls every function on a batch, checks what came back, and returns the weighted
total plus each function's values for logging.
"""

from __future__ import annotations

import logging
import math
import numbers
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from rewardlab.rewards.isolation import RewardCaller, RewardCrash, RewardTimeout

logger = logging.getLogger(__name__)

RewardFn = Callable[..., list[float | None]]

# Keyword arguments every reward function receives; a dataset column may not reuse these names.
_RESERVED_KWARGS = ("prompts", "completions", "completion_ids")


class RewardError(ValueError):
    """A reward function failed or returned something unusable. The message names the function."""


def _shorten(obj: Any, limit: int = 200) -> str:
    text = obj if isinstance(obj, str) else repr(obj)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _function_name(fn: Callable) -> str:
    name = getattr(fn, "__name__", None)
    if not name:  # functools.partial, callable instances
        inner = getattr(fn, "func", None)
        name = getattr(inner, "__name__", None) or type(fn).__name__
    return name


class RewardFunctions:
    """Several reward functions combined with explicit weights.

    Args:
        funcs: one callable or a list of them. A string is looked up in `rewardlab.rewards.REWARDS`.
        weights: one float per function; default 1.0 each.

    Names come from each function's ``__name__``; repeats get suffixes ``_2``, ``_3``, ... in order.

    Calling the object on a batch of B completions returns ``(total, per_function)``: ``total`` is a
    float32 tensor [B] holding sum_i weight_i * reward_i (a ``None`` reward contributes 0), and
    ``per_function`` maps each name to a float32 tensor [B] of its raw, unweighted values with NaN
    where the function returned ``None``.
    """

    def __init__(
        self,
        funcs: RewardFn | str | Sequence[RewardFn | str],
        weights: Sequence[float] | None = None,
        timeout: float = 0.0,
        workers: int = 0,
    ):
        if callable(funcs) or isinstance(funcs, str):
            funcs = [funcs]
        funcs = list(funcs)
        if not funcs:
            raise RewardError("RewardFunctions needs at least one reward function; got an empty list.")
        resolved: list[RewardFn] = []
        for position, fn in enumerate(funcs):
            if isinstance(fn, str):
                from rewardlab.rewards import REWARDS  # late import: the registry module imports this one

                fn = REWARDS[fn]
            if not callable(fn):
                raise RewardError(
                    f"reward function #{position} is a {type(fn).__name__} ({_shorten(fn, 80)}), not a "
                    "callable; pass functions like fn(completions, **kwargs) -> list[float | None]."
                )
            resolved.append(fn)
        self.funcs = resolved
        self.timeout = timeout
        self._caller = RewardCaller(timeout, workers)  # timeout and worker processes (rewards/isolation.py)
        self._caller.register(resolved)

        if weights is None:
            weights = [1.0] * len(resolved)
        weights = [float(w) for w in weights]
        if len(weights) != len(resolved):
            raise RewardError(
                f"got {len(weights)} reward weights for {len(resolved)} reward functions "
                f"({', '.join(_function_name(f) for f in resolved)}); give one weight per function."
            )
        for fn, weight in zip(resolved, weights):
            if not math.isfinite(weight):
                raise RewardError(f"the weight of reward function {_function_name(fn)} is {weight}; use a finite number.")
        self.weights = weights

        self.names: list[str] = []
        seen: dict[str, int] = {}
        for fn in resolved:
            base = _function_name(fn)
            seen[base] = seen.get(base, 0) + 1
            name = base if seen[base] == 1 else f"{base}_{seen[base]}"
            while name in self.names:  # a function really called e.g. "format_2"
                seen[base] += 1
                name = f"{base}_{seen[base]}"
            self.names.append(name)
        self._warned_all_none = False

    def __len__(self) -> int:
        return len(self.funcs)

    def __repr__(self) -> str:
        parts = ", ".join(f"{n}*{w:g}" for n, w in zip(self.names, self.weights))
        return f"RewardFunctions({parts})"

    def __call__(
        self,
        prompts: list[str] | list[list[dict]],
        completions: list[str] | list[list[dict]],
        completion_ids: list[list[int]],
        columns: Mapping[str, list] | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        batch_size = len(completions)
        if len(prompts) != batch_size or len(completion_ids) != batch_size:
            raise RewardError(
                f"reward inputs disagree on the batch size: {len(prompts)} prompts, {batch_size} completions, "
                f"{len(completion_ids)} completion_ids; pass one prompt (repeated per sample) for each completion."
            )
        columns = dict(columns or {})
        for key, values in columns.items():
            if key in _RESERVED_KWARGS:
                raise RewardError(
                    f"dataset column {key!r} clashes with the argument reward functions receive under that "
                    "name; rename the column."
                )
            if len(values) != batch_size:
                raise RewardError(
                    f"dataset column {key!r} has {len(values)} values for {batch_size} completions; repeat "
                    "each row's value once per completion of its prompt."
                )

        per_function: dict[str, torch.Tensor] = {}
        raw: dict[str, torch.Tensor] = {}  # float64, for the error message
        total = torch.zeros(batch_size, dtype=torch.float64)
        applicable = torch.zeros(batch_size, dtype=torch.bool)
        for fn, name, weight in zip(self.funcs, self.names, self.weights):
            values = self._call_one(fn, name, prompts, completions, completion_ids, columns)
            rewards = torch.tensor(
                [math.nan if v is None else v for v in values], dtype=torch.float64
            ).reshape(batch_size)
            present = ~torch.isnan(rewards)
            applicable |= present
            total += weight * torch.where(present, rewards, torch.zeros_like(rewards))
            per_function[name], raw[name] = rewards.to(torch.float32), rewards

        if batch_size and not bool(applicable.all()) and not self._warned_all_none:
            first = int((~applicable).nonzero()[0])
            logger.warning(
                "every reward function returned None for %d of %d samples (first: sample %d); their total "
                "reward is 0. Check that at least one function applies to each prompt. (Warned once.)",
                int((~applicable).sum()), batch_size, first,
            )
            self._warned_all_none = True
        total32 = total.to(torch.float32)  # the training dtype: 1e300 passes float64 but becomes inf here
        if not bool(torch.isfinite(total32).all()):
            index = int((~torch.isfinite(total32)).nonzero()[0])
            parts = ", ".join(f"{n}={float(raw[n][index]):.4g}*{w:g}" for n, w in zip(self.names, self.weights))
            raise RewardError(
                f"the weighted reward of sample {index} is {float(total[index]):.4g}, beyond float32's range "
                f"(|r| <= {torch.finfo(torch.float32).max:.3g}) used in training ({parts}); rescale the reward "
                f"function or its weight.\n  prompt: {_shorten(prompts[index])}\n  completion: {_shorten(completions[index])}"
            )
        return total32, per_function

    def _call_one(self, fn, name, prompts, completions, completion_ids, columns) -> list[float | None]:
        try:
            values = self._caller(fn, dict(prompts=prompts, completions=completions, completion_ids=completion_ids, **columns))
        except RewardTimeout:
            raise RewardError(
                f"reward function {name} did not return within reward_timeout={self.timeout:g}s on a batch of "
                f"{len(completions)} completions and was stopped (first completion: {_shorten(completions[0], 80) if completions else ''}); "
                "make it faster or raise reward_timeout."
            ) from None
        except RewardCrash:
            raise RewardError(
                f"reward function {name} crashed its worker process (a segfault, os._exit, or the system killed it "
                f"for memory) on a batch of {len(completions)} completions."
            ) from None
        except SystemExit as exc:  # exit() inside a reward would otherwise end the run silently
            raise RewardError(f"reward function {name} called exit({exc.code!r}); return a reward instead.") from None
        except Exception as exc:
            hint = ""
            if isinstance(exc, TypeError) and "unexpected keyword argument" in str(exc):
                hint = " Reward functions receive every dataset column as a keyword; add **kwargs to its signature."
            elif isinstance(exc, TypeError) and "required" in str(exc) and "argument" in str(exc):
                hint = (
                    " Arguments other than prompts/completions/completion_ids come from dataset columns "
                    f"(available: {', '.join(sorted(columns)) or 'none'}); add the missing column to every row."
                )
            raise RewardError(f"reward function {name} raised {type(exc).__name__}: {exc}.{hint}") from exc

        if values is None:
            raise RewardError(
                f"reward function {name} returned None instead of a list of {len(completions)} values; "
                "did it forget to `return`? (Use None inside the list for samples it does not apply to.)"
            )
        if isinstance(values, torch.Tensor):
            values = values.detach().cpu().reshape(-1).tolist()
        elif hasattr(values, "tolist") and not isinstance(values, (str, bytes)):  # numpy arrays
            values = values.tolist()
        if isinstance(values, (str, bytes, Mapping)) or not isinstance(values, Sequence):
            raise RewardError(
                f"reward function {name} returned a {type(values).__name__}; it must return a list with one "
                f"float (or None) per completion ({len(completions)} here)."
            )
        if len(values) != len(completions):
            raise RewardError(
                f"reward function {name} returned {len(values)} values, expected {len(completions)} "
                "(one per completion)."
            )

        checked: list[float | None] = []
        for index, value in enumerate(values):
            if value is None:
                checked.append(None)
                continue
            if isinstance(value, torch.Tensor) and value.numel() == 1:
                value = value.item()
            if not isinstance(value, numbers.Real):
                raise RewardError(
                    f"reward function {name} returned a {type(value).__name__} ({_shorten(value, 60)}) for "
                    f"sample {index}; return a float, or None when the function does not apply."
                )
            value = float(value)
            if not math.isfinite(value):
                raise RewardError(
                    f"reward function {name} returned {value} for sample {index}; rewards must be finite "
                    f"(return None if it does not apply).\n  prompt: {_shorten(prompts[index])}\n"
                    f"  completion: {_shorten(completions[index])}"
                )
            checked.append(value)
        return checked


def summary_metrics(per_function: Mapping[str, torch.Tensor]) -> dict[str, float]:
    """Mean and standard deviation of each function's rewards, ignoring NaN (= not applicable).

    The standard deviation is the population one (divides by n), so a single sample gives 0.
    A function that applied to no sample gets NaN for both.

    >>> summary_metrics({"math": torch.tensor([1.0, 0.0, float("nan")])})
    {'rewards/math/mean': 0.5, 'rewards/math/std': 0.5}
    """
    metrics: dict[str, float] = {}
    for name, values in per_function.items():
        values = torch.as_tensor(values, dtype=torch.float64).reshape(-1)
        present = values[~torch.isnan(values)]
        if present.numel() == 0:
            mean = std = math.nan
        else:
            mean = float(present.mean())
            std = float(((present - mean) ** 2).mean().sqrt())
        metrics[f"rewards/{name}/mean"] = mean
        metrics[f"rewards/{name}/std"] = std
    return metrics
