"""Containing reward functions that hang or crash: a per-call timeout, and worker processes.

    RewardCaller(timeout=0, workers=0)    calls fn(**kwargs) in this process (timeout 0: no limit)
    RewardCaller(timeout=30)              ... stopped with RewardTimeout after 30 s (SIGALRM, main thread)
    RewardCaller(timeout=30, workers=2)   ... in one of 2 forked worker processes: a hang is killed at the
                                          timeout, a crash (segfault, os._exit) is reported, and the
                                          function's exceptions and exit() come back as errors

In-process timeouts interrupt Python code only (a call stuck inside C code ends when that code returns);
worker processes stop anything. Workers are forked, so any callable works (lambdas, closures): the
function stays in the parent's memory and only its position and the batch cross to the worker.
Reward functions in workers cannot change the parent's state (counters, caches) — by design.
"""

from __future__ import annotations

import atexit
import concurrent.futures
import faulthandler
import multiprocessing
import signal
import threading
from collections.abc import Callable
from typing import Any

_FUNCTIONS: list[Callable] = []  # filled before the workers fork; workers look functions up by position


class RewardTimeout(Exception):
    """A reward call ran past its timeout."""


class RewardCrash(Exception):
    """A reward call ended its worker process (segfault, os._exit, killed by the system)."""


def _call_in_worker(position: int, kwargs: dict[str, Any]) -> Any:
    faulthandler.disable()  # a crash is reported by the parent (RewardCrash), not as a dump from here
    try:
        return _FUNCTIONS[position](**kwargs)
    except SystemExit as exit_:  # exit() in a reward must not end the worker silently
        raise RuntimeError(f"called exit({exit_.code!r})") from None


def _alarm(signum, frame):
    raise RewardTimeout


class RewardCaller:
    """Calls reward functions with the configured containment (see the module docstring)."""

    def __init__(self, timeout: float = 0.0, workers: int = 0):
        if timeout < 0 or workers < 0:
            raise ValueError(f"reward timeout and workers must be >= 0, got {timeout}, {workers}")
        self.timeout, self.workers = float(timeout), int(workers)
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None
        self._positions: dict[int, int] = {}  # id(fn) -> position in _FUNCTIONS

    def register(self, functions: list[Callable]) -> None:
        """Make `functions` callable in workers (before the first call forks them)."""
        for fn in functions:
            if id(fn) not in self._positions:
                self._positions[id(fn)] = len(_FUNCTIONS)
                _FUNCTIONS.append(fn)

    def __call__(self, fn: Callable, kwargs: dict[str, Any]) -> Any:
        if self.workers:
            return self._in_worker(fn, kwargs)
        if self.timeout and threading.current_thread() is threading.main_thread():
            previous = signal.signal(signal.SIGALRM, _alarm)
            signal.setitimer(signal.ITIMER_REAL, self.timeout)
            try:
                return fn(**kwargs)
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
                signal.signal(signal.SIGALRM, previous)
        return fn(**kwargs)

    def _in_worker(self, fn: Callable, kwargs: dict[str, Any]) -> Any:
        if id(fn) not in self._positions:
            self.close()  # workers forked before fn existed cannot see it
            self.register([fn])
        if self._pool is None:
            self._pool = concurrent.futures.ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("fork"))
            atexit.register(self.close, kill=True)  # before the interpreter tears down what shutdown needs
        future = self._pool.submit(_call_in_worker, self._positions[id(fn)], kwargs)
        try:
            return future.result(timeout=self.timeout or None)
        except concurrent.futures.TimeoutError:
            self.close(kill=True)
            raise RewardTimeout from None
        except concurrent.futures.process.BrokenProcessPool:
            self.close(kill=True)
            raise RewardCrash from None

    def close(self, kill: bool = False) -> None:
        """Stop the workers (kill: at once, for a hung one). The next call starts fresh ones."""
        pool, self._pool = self._pool, None
        if pool is None:
            return
        atexit.unregister(self.close)
        if kill:
            for process in list(getattr(pool, "_processes", {}).values()):
                process.kill()
        pool.shutdown(wait=not kill, cancel_futures=True)

    def __del__(self) -> None:
        try:
            self.close(kill=True)
        except Exception:  # interpreter shutdown
            pass
