"""The run directory and its checkpoints, shared by the language-model trainers and classic RL.

    claim_run_dir(run_dir, resume, overwrite)  lock it (a second run on it fails at once), refuse an earlier
                                               run's outputs unless resuming or overwriting, tidy leftovers
    atomic_dir(final, write)                   write a folder under a temporary name, then rename it into place
    write_checkpoint(run_dir, step, write, keep)  checkpoint-<step>/ written atomically, the newest `keep` kept
    list_checkpoints(run_dir)                  complete checkpoint-<step>/ folders, oldest first
    load_newest_intact(run_dir, ...)           the newest checkpoint that loads; a damaged one is named and skipped
    load_state(path, keys)                     a trainer_state.pt read weights-only (nothing in it can run code)
    set_seed, rng_state, restore_rng_state     python, numpy and torch (and CUDA) RNGs

The lock is an advisory `flock` on run_dir/.lock, held for the life of the process: the operating system
drops it when the process ends, however it ends, so a killed run never leaves a stale lock behind.

Error messages tell the user what to type; `Wording` holds the words of the caller's command line.
"""

from __future__ import annotations

import fcntl
import logging
import os
import pickle
import random
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch

log = logging.getLogger(__name__)
T = TypeVar("T")

LOCK_FILE = ".lock"
CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")
STATE_FILE = "trainer_state.pt"
# what a run writes into its directory; an earlier run is recognised by any of these
RUN_MARKERS = ("metrics.jsonl", "summary.json", "final")
RUN_OUTPUTS = ("metrics.jsonl", "samples.jsonl", "eval_samples.jsonl", "summary.json", "config.yaml", "final", "plots")
_NUMPY_CORE = getattr(np, "_core", None) or np.core
# what a trainer state may hold besides tensors and plain Python values: numpy's legacy RNG state (a uint32 array)
STATE_SAFE_GLOBALS = [_NUMPY_CORE.multiarray._reconstruct, np.ndarray, np.dtype, type(np.dtype(np.uint32))]


@dataclass(frozen=True)
class Wording:
    """How a user asks to resume, to overwrite, or to train elsewhere; the defaults are `rewardlab train`'s."""

    resume: str = "--resume"
    overwrite: str = "--overwrite"
    new_name: str = "run_name=..."
    new_parent: str = "output_dir=..."


TRAIN_WORDING = Wording()


# --- the run directory ---------------------------------------------------------------------------------

class RunDirError(ValueError):
    """The run directory is in use by another run, or holds an earlier run and neither resume nor
    overwrite was asked for. The message says which, and what to do."""


_held_locks: dict[Path, int] = {}  # run_dir -> open file descriptor holding its flock


def _lock(run_dir: Path, wording: Wording) -> None:
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
            f"directory ({wording.new_name} or {wording.new_parent})."
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


def claim_run_dir(run_dir: Path, resume: bool, overwrite: bool, wording: Wording = TRAIN_WORDING) -> None:
    """Create and lock run_dir for this run. Without resume, an earlier run's outputs are an error, or with
    overwrite are deleted first. Half-written checkpoint folders (.tmp-*) of a killed run are removed."""
    run_dir.mkdir(parents=True, exist_ok=True)
    _lock(run_dir, wording)
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
            f"{run_dir} already holds a run ({shown}). Continue it with {wording.resume}, replace it with "
            f"{wording.overwrite} (deletes its checkpoints, final model and logs), or train into another directory "
            f"({wording.new_name})."
        )
    for path in run_dir.iterdir():
        if path.name in RUN_OUTPUTS or CHECKPOINT_RE.match(path.name) or path.name.startswith("events.out.tfevents"):
            _remove(path)
    log.warning("overwrite: deleted the earlier run in %s (%s)", run_dir, ", ".join(found))


# --- checkpoints ---------------------------------------------------------------------------------------

class CheckpointError(ValueError):
    """A checkpoint that cannot be used: the message names its path and what to do."""


class CorruptCheckpointError(CheckpointError):
    """A checkpoint's files are missing, truncated or unreadable (a resume skips it for an older one)."""


class UnsafeCheckpointError(CheckpointError):
    """A trainer state holds objects that weights-only loading refuses (unpickling them could run code)."""


def atomic_dir(final: Path, write: Callable[[Path], Any]) -> Path:
    """`write(tmp)` fills a hidden temporary folder, which then replaces `final`: a kill never leaves half a
    folder under the final name, and a failed write leaves nothing (claim_run_dir removes a killed one's)."""
    tmp = final.parent / f".tmp-{final.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        write(tmp)
    except BaseException:  # disk full, an interrupt: nothing half-written is left behind
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    return final


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoints, oldest first (a half-written one is never named checkpoint-N)."""
    if not run_dir.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in run_dir.iterdir() if (m := CHECKPOINT_RE.match(p.name))]
    return [p for _, p in sorted(found) if (p / STATE_FILE).is_file()]


def write_checkpoint(run_dir: Path, step: int, write: Callable[[Path], Any], keep: int) -> Path:
    """run_dir/checkpoint-<step>/ filled by `write(tmp)` (atomic_dir), then all but the newest `keep`
    checkpoints deleted (0 keeps all)."""
    path = atomic_dir(run_dir / f"checkpoint-{step}", write)
    for old in list_checkpoints(run_dir)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return path


def load_newest_intact(
    run_dir: Path, checkpoints: list[Path], load: Callable[[Path], T], wording: Wording = TRAIN_WORDING
) -> tuple[Path, T] | None:
    """(checkpoint, load(checkpoint)) for the newest of `checkpoints` that `load` reads without
    CorruptCheckpointError; each damaged one is named in a warning and skipped. None when there are none;
    CheckpointError, naming them, when none is intact."""
    for path in reversed(checkpoints):
        try:
            return path, load(path)
        except CorruptCheckpointError as error:
            log.warning("skipping %s: %s", path, error)
    if checkpoints:
        raise CheckpointError(f"no intact checkpoint in {run_dir} (tried {', '.join(p.name for p in checkpoints)}); "
                              f"remove them to start over, or use {wording.overwrite}")
    return None


def load_state(path: Path, keys: tuple[str, ...], what: str = "rewardlab trainer state") -> dict[str, Any]:
    """A trainer_state.pt, weights-only with the RNG allow-list: a refused object raises UnsafeCheckpointError,
    a missing or damaged file, or one without all of `keys`, CorruptCheckpointError."""
    with torch.serialization.safe_globals(STATE_SAFE_GLOBALS):
        try:
            state = torch.load(path, weights_only=True)
        except FileNotFoundError:
            raise CorruptCheckpointError(f"{path} is missing") from None
        except pickle.UnpicklingError as error:
            if "Weights only load failed" not in str(error):  # not a refused object: damaged bytes
                raise CorruptCheckpointError(f"{path} is unreadable ({first_line(error)})") from None
            reason = str(error).splitlines()[-1][:300] if str(error) else type(error).__name__
            raise UnsafeCheckpointError(
                f"{path} holds an object that is not a tensor, a plain value or an RNG state, so it was not loaded "
                f"(unpickling it could run code; {reason}). Resume only from checkpoints rewardlab wrote; to "
                "start over, remove the checkpoint folder or train into a new output_dir."
            ) from None
        except (RuntimeError, EOFError, OSError, ValueError) as error:  # truncated or zero-byte: torch's zip reader
            raise CorruptCheckpointError(f"{path} is unreadable ({first_line(error)})") from None
    if not isinstance(state, dict) or not set(keys) <= set(state):
        raise CorruptCheckpointError(f"{path} is not a {what} (no {', '.join(keys[:-1])} and {keys[-1]})")
    return state


def first_line(error: BaseException) -> str:
    text = str(error).strip()
    return (text.splitlines()[0][:200] if text else "") or type(error).__name__


# --- random number generators --------------------------------------------------------------------------

def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
