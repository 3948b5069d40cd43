"""The reward-function protocol and the weighted combination the trainers call.

A reward function is a plain callable with TRL's signature, so functions written for TRL port unchanged:

    def my_reward(completions, answer, **kwargs) -> list[float | None]: ...

It is called as TRL's GRPOTrainer calls it:

    fn(prompts=..., completions=..., completion_ids=..., **dataset_columns,
       trainer_state=..., log_extra=..., log_metric=...)

and must accept the keyword arguments it does not use through ``**kwargs``. The dataset columns are every
column but ``prompt`` and ``completion`` (and ``completion_ids``), one value per completion. ``trainer_state``
is a ``transformers.TrainerState`` (``global_step``: optimizer steps done so far, ``max_steps``, ``epoch``, ...);
``log_metric(name, value)`` adds a scalar to the step's metrics (the mean of the step's values, in
metrics.jsonl); ``log_extra(column, values)`` adds a column, one value per completion, to the logged samples.
A function may be ``async def``: the async ones of a batch run concurrently (``asyncio.gather``) on one
event loop that lives as long as the process, as in TRL. It returns one value per completion; ``None``
means "this function does not apply to this sample" (e.g. a code reward on a math prompt).

`RewardFunctions` calls every function on a batch, checks what came back, and returns the weighted
total plus each function's values for logging; what the functions logged is in `last_logs`.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import math
import numbers
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from rewardlab.rewards.isolation import RewardCaller, RewardCrash, RewardTimeout

logger = logging.getLogger(__name__)

RewardFn = Callable[..., list[float | None]]

# Keyword arguments every reward function receives; a dataset column may not reuse these names.
_RESERVED_KWARGS = ("prompts", "completions", "completion_ids", "trainer_state", "log_extra", "log_metric")


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


def is_async(fn: Callable) -> bool:
    """Whether calling fn returns a coroutine: an ``async def`` function, a functools.partial of one, or an
    object whose ``__call__`` is ``async def``."""
    while isinstance(fn, functools.partial):
        fn = fn.func
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(type(fn).__call__)


_LOOP: tuple[int, asyncio.AbstractEventLoop] | None = None  # (pid, loop): a forked worker starts its own
_LOOP_LOCK = threading.Lock()


def run_coroutine(awaitable: Any) -> Any:
    """Run an awaitable to completion on this process's reward event loop, a daemon thread started on first
    use and kept for the process's life (so an async client a reward caches, e.g. an HTTP session, stays on the
    loop it was made on). Works whether or not the calling thread already runs an event loop (a notebook)."""
    global _LOOP
    with _LOOP_LOCK:
        if _LOOP is None or _LOOP[0] != os.getpid():
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="rewardlab-async-rewards", daemon=True).start()
            _LOOP = (os.getpid(), loop)
        loop = _LOOP[1]

    future = asyncio.run_coroutine_threadsafe(_contained(awaitable), loop)
    try:
        exited, value = future.result()
    except BaseException:  # a timeout (SIGALRM) or Ctrl-C while waiting: stop the coroutine too
        future.cancel()
        raise
    if exited:
        raise value  # exit() inside an async reward: raised here, in the caller's thread
    return value


async def _contained(awaitable: Any) -> tuple[bool, Any]:
    """(False, its value), or (True, the SystemExit/KeyboardInterrupt it raised): asyncio lets those two
    escape a task and stop the event loop, which would leave the caller waiting for ever."""
    try:
        return False, await awaitable
    except (SystemExit, KeyboardInterrupt) as exc:
        return True, exc


@dataclass
class RewardLogs:
    """What the reward functions of one call logged: log_metric's values by name (several per name when
    several functions, or calls, use it) and log_extra's columns (one value per completion)."""

    metrics: dict[str, list[float]] = field(default_factory=dict)
    extra: dict[str, list] = field(default_factory=dict)

    def log_metric(self, name: str, value: float) -> None:
        self.metrics.setdefault(str(name), []).append(value)

    def log_extra(self, column: str, values: list) -> None:
        self.extra.setdefault(str(column), []).extend(list(values))

    def metric_means(self) -> dict[str, float]:
        """Each log_metric name's mean over the values logged (TRL averages them over the logging step)."""
        return {name: sum(values) / len(values) for name, values in self.metrics.items() if values}

    def merge(self, other: RewardLogs) -> None:
        """Add other's values after these (new lists: neither side's lists change)."""
        for name, values in other.metrics.items():
            self.metrics[name] = self.metrics.get(name, []) + list(values)
        for column, values in other.extra.items():
            self.extra[column] = self.extra.get(column, []) + list(values)


class _WithLogs:
    """A sync reward function called with TRL's log_metric/log_extra; returns (values, logs). Runs in this
    process or in a reward worker: the logging callables are made where the function runs, and what it
    logged comes back with its values."""

    def __init__(self, fn: Callable):
        self.fn = fn

    def __call__(self, **kwargs: Any) -> tuple[Any, RewardLogs]:
        logs = RewardLogs()
        values = self.fn(**kwargs, log_extra=logs.log_extra, log_metric=logs.log_metric)
        if inspect.isawaitable(values):  # a sync callable that hands back a coroutine
            values = run_coroutine(values)
        return values, logs


class _AsyncGroup:
    """The async reward functions of a RewardFunctions, run concurrently with asyncio.gather (TRL's way);
    returns [(values, logs) or the exception it raised] in order."""

    def __init__(self, fns: list[Callable]):
        self.fns = fns

    def __call__(self, **kwargs: Any) -> list[Any]:
        async def one(fn: Callable) -> Any:
            logs = RewardLogs()
            exited, value = await _contained(fn(**kwargs, log_extra=logs.log_extra, log_metric=logs.log_metric))
            if exited:
                return _Exited(value)
            return value, logs

        async def every() -> list[Any]:
            return await asyncio.gather(*(one(fn) for fn in self.fns), return_exceptions=True)

        results = run_coroutine(every())
        for result in results:  # exit() in an async reward is raised, not passed off as a value
            if isinstance(result, _Exited):
                raise result.exc
        return results


@dataclass
class _Exited:
    exc: BaseException


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
        # each sync function is called through a wrapper that hands it log_metric/log_extra; the async ones
        # are one call that gathers them all (so they run concurrently, as in TRL)
        self._sync = {i: _WithLogs(fn) for i, fn in enumerate(resolved) if not is_async(fn)}
        self._async = [i for i, fn in enumerate(resolved) if is_async(fn)]
        self._async_group = _AsyncGroup([resolved[i] for i in self._async]) if self._async else None
        self._caller = RewardCaller(timeout, workers)  # timeout and worker processes (rewards/isolation.py)
        self._caller.register([*self._sync.values(), *([self._async_group] if self._async_group else [])])
        self.trainer_state: Any = None  # TRL's trainer_state argument (a transformers.TrainerState), made on first use
        self.last_logs = RewardLogs()  # what the functions logged in the latest call (log_metric, log_extra)

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

    def at_step(self, global_step: int, **state: Any) -> None:
        """Set what reward functions see as trainer_state: ``global_step`` (optimizer steps done) and any other
        TrainerState field (max_steps, epoch, ...)."""
        if self.trainer_state is None:
            self.trainer_state = new_trainer_state()
        self.trainer_state.global_step = int(global_step)
        for name, value in state.items():
            setattr(self.trainer_state, name, value)

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

        if self.trainer_state is None:
            self.trainer_state = new_trainer_state()
        kwargs = dict(prompts=prompts, completions=completions, completion_ids=completion_ids, **columns,
                      trainer_state=self.trainer_state)
        outputs = self._call_all(kwargs, columns, completions)
        logs = RewardLogs()
        for index in range(len(self.funcs)):  # in the functions' order, whether sync or async
            logs.merge(outputs[index][1])
        self.last_logs = self._checked_logs(logs, batch_size)

        per_function: dict[str, torch.Tensor] = {}
        raw: dict[str, torch.Tensor] = {}  # float64, for the error message
        total = torch.zeros(batch_size, dtype=torch.float64)
        applicable = torch.zeros(batch_size, dtype=torch.bool)
        for index, (name, weight) in enumerate(zip(self.names, self.weights)):
            values = self._checked(name, outputs[index][0], prompts, completions)
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

    def _call_all(self, kwargs: dict[str, Any], columns: Mapping[str, list], completions: list) -> dict[int, tuple[Any, RewardLogs]]:
        """Every function's (raw return value, logs) by position: the sync ones one by one, then the async ones
        together (asyncio.gather), each through the RewardCaller (timeout, workers)."""
        outputs: dict[int, tuple[Any, RewardLogs]] = {}
        for index, wrapped in self._sync.items():
            outputs[index] = self._invoke(wrapped, self.names[index], kwargs, columns, completions)
        if self._async_group is not None:
            names = ", ".join(self.names[i] for i in self._async)
            results = self._invoke(self._async_group, names, kwargs, columns, completions)
            for index, result in zip(self._async, results):
                if isinstance(result, BaseException):
                    raise self._raised(self.names[index], result, columns) from result
                outputs[index] = result
        return outputs

    def _invoke(self, wrapped: Callable, name: str, kwargs: dict[str, Any], columns: Mapping[str, list],
                completions: list) -> Any:
        try:
            return self._caller(wrapped, kwargs)
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
            raise self._raised(name, exc, columns) from exc

    @staticmethod
    def _raised(name: str, exc: BaseException, columns: Mapping[str, list]) -> RewardError:
        hint = ""
        if isinstance(exc, TypeError) and "unexpected keyword argument" in str(exc):
            hint = (" Reward functions receive every dataset column and TRL's trainer_state, log_extra and "
                    "log_metric as keywords; add **kwargs to its signature.")
        elif isinstance(exc, TypeError) and "required" in str(exc) and "argument" in str(exc):
            hint = (
                " Arguments other than prompts/completions/completion_ids come from dataset columns "
                f"(available: {', '.join(sorted(columns)) or 'none'}); add the missing column to every row."
            )
        return RewardError(f"reward function {name} raised {type(exc).__name__}: {exc}.{hint}")

    def _checked_logs(self, logs: RewardLogs, batch_size: int) -> RewardLogs:
        """log_metric values must be numbers and log_extra columns hold one value per completion."""
        for name, values in logs.metrics.items():
            for value in values:
                if isinstance(value, torch.Tensor) and value.numel() == 1:
                    value = value.item()
                if isinstance(value, bool) or not isinstance(value, numbers.Real):
                    raise RewardError(f"log_metric({name!r}, ...) got a {type(value).__name__} ({_shorten(value, 60)}); "
                                      "log one number per call.")
            logs.metrics[name] = [float(v.item() if isinstance(v, torch.Tensor) else v) for v in values]
        for column, values in logs.extra.items():
            if len(values) != batch_size:
                raise RewardError(f"log_extra({column!r}, ...) got {len(values)} values in all for a batch of {batch_size} "
                                  "completions; log one value per completion.")
        return logs

    def _checked(self, name: str, values: Any, prompts: list, completions: list) -> list[float | None]:
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


def new_trainer_state(**fields: Any) -> Any:
    """A transformers.TrainerState, the object TRL passes reward functions as trainer_state."""
    from transformers import TrainerState  # imported on first use: it loads part of transformers' Trainer

    return TrainerState(**fields)


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
