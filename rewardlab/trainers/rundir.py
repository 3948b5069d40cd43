"""The run directory: one run at a time, never mixed with an earlier one, and a clean stop on Ctrl-C.

    claim_run_dir(run_dir, resume, overwrite)  lock it (a second run on it fails at once), refuse an earlier
                                               run's outputs unless resuming or overwriting, tidy leftovers
    StopSignal                                 SIGINT/SIGTERM: finish the step, save a checkpoint, stop

The lock is an advisory `flock` on run_dir/.lock, held for the life of the process: the operating system
drops it when the process ends, however it ends, so a killed run never leaves a stale lock behind.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import signal
import sys
import threading
from pathlib import Path

from .checkpoint import CHECKPOINT_RE

log = logging.getLogger(__name__)

LOCK_FILE = ".lock"
# what a run writes into its directory; an earlier run is recognised by any of these
RUN_MARKERS = ("metrics.jsonl", "summary.json", "final")
RUN_OUTPUTS = ("metrics.jsonl", "samples.jsonl", "eval_samples.jsonl", "summary.json", "config.yaml", "final", "plots")


class RunDirError(ValueError):
    """The run directory is in use by another run, or holds an earlier run and neither resume nor
    overwrite was asked for. The message says which, and what to do."""


class TrainingInterrupted(Exception):
    """SIGINT or SIGTERM stopped training after a step; a checkpoint of that step was saved."""

    def __init__(self, signal_name: str, step: int, checkpoint: Path):
        self.signal_name, self.step, self.checkpoint = signal_name, step, checkpoint
        super().__init__(
            f"stopped by {signal_name} after step {step}; checkpoint saved to {checkpoint}. Continue the run with "
            "the same command plus --resume (or resume=true)."
        )

    @property
    def exit_code(self) -> int:  # the shell's convention for a process ended by a signal: 128 + its number
        return 128 + int(getattr(signal, self.signal_name, signal.SIGINT))


_held_locks: dict[Path, int] = {}  # run_dir -> open file descriptor holding its flock


def _lock(run_dir: Path) -> None:
    key = run_dir.resolve()
    if key in _held_locks:  # this process already holds it (a second trainer called in the same process)
        return
    fd = os.open(run_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        owner = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise RunDirError(
            f"{run_dir} is in use by another run (pid {owner}); wait for it to finish, or train into another "
            "directory (run_name=... or output_dir=...)."
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    _held_locks[key] = fd


def release_run_dir(run_dir: Path) -> None:
    """Drop the lock taken by claim_run_dir (also dropped by the operating system when the process ends)."""
    fd = _held_locks.pop(Path(run_dir).resolve(), None)
    if fd is not None:
        os.close(fd)


def earlier_outputs(run_dir: Path) -> list[str]:
    """Names in run_dir showing that a run already wrote there (metrics, summary, final/, checkpoints)."""
    if not run_dir.is_dir():
        return []
    names = sorted(p.name for p in run_dir.iterdir() if p.name in RUN_MARKERS or CHECKPOINT_RE.match(p.name))
    return names


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def claim_run_dir(run_dir: Path, resume: bool, overwrite: bool) -> None:
    """Create and lock run_dir for this run. Without resume, an earlier run's outputs are an error, or with
    overwrite are deleted first. Half-written checkpoint folders (.tmp-*) of a killed run are removed."""
    run_dir.mkdir(parents=True, exist_ok=True)
    _lock(run_dir)
    for leftover in run_dir.glob(".tmp-*"):
        log.info("removing %s, a folder left half-written by an earlier run", leftover)
        _remove(leftover)
    found = earlier_outputs(run_dir)
    if not found or resume:
        return
    if not overwrite:
        release_run_dir(run_dir)
        shown = ", ".join(found[:6]) + (", ..." if len(found) > 6 else "")
        raise RunDirError(
            f"{run_dir} already holds a run ({shown}). Continue it with --resume, replace it with --overwrite "
            "(deletes its checkpoints, final model and logs), or train into another directory (run_name=...)."
        )
    for path in run_dir.iterdir():
        if path.name in RUN_OUTPUTS or CHECKPOINT_RE.match(path.name) or path.name.startswith("events.out.tfevents"):
            _remove(path)
    log.warning("overwrite: deleted the earlier run in %s (%s)", run_dir, ", ".join(found))


class StopSignal:
    """Turns the first SIGINT or SIGTERM into a request to stop after the current step (the trainer then
    saves a checkpoint and raises TrainingInterrupted); a second one stops at once, as before.

    Installed only from the main thread (Python's rule for signal handlers); elsewhere it never fires.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.received: str | None = None
        self._previous: dict[int, object] = {}

    def install(self) -> StopSignal:
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def uninstall(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame) -> None:
        if self.received is not None:  # the second one: stop now, without a checkpoint
            self.uninstall()
            raise KeyboardInterrupt
        self.received = signal.Signals(signum).name
        print(f"\nrewardlab: {self.received} received; finishing this step, then saving a checkpoint "
              "(send it again to stop at once, without one)", file=sys.stderr, flush=True)
