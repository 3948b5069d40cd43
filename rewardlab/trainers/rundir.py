"""The run directory: one run at a time, never mixed with an earlier one, and a clean stop on Ctrl-C.

    claim_run_dir(run_dir, resume, overwrite)  lock it (a second run on it fails at once), refuse an earlier
                                               run's outputs unless resuming or overwriting, tidy leftovers
    StopSignal                                 SIGINT/SIGTERM: finish the step, save a checkpoint, stop

claim_run_dir and the lock live in rewardlab/runs.py, shared with classic RL; they are re-exported here.
"""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path

from ..runs import (
    LOCK_FILE,
    RUN_MARKERS,
    RUN_OUTPUTS,
    RunDirError,
    claim_run_dir,
    earlier_outputs,
    release_run_dir,
)

__all__ = [
    "LOCK_FILE", "RUN_MARKERS", "RUN_OUTPUTS", "RunDirError", "StopSignal", "TrainingInterrupted",
    "claim_run_dir", "earlier_outputs", "release_run_dir",
]


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
