"""Checkpoints that survive a kill: written to a temporary folder, then renamed into place.

checkpoint-<step>/ holds the model (HF save_pretrained, safetensors; the adapter only with LoRA), the
tokenizer, and trainer_state.pt (optimizer, scheduler, RNG states, step, extra trainer state).

trainer_state.pt is read weights-only: tensors, plain Python values and, by an explicit allow-list, numpy's
RNG state array. Anything else in it (an object planted to run code when unpickled) makes loading fail
with an error naming the file, instead of running.
"""

from __future__ import annotations

import os
import pickle
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..models import is_peft

CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")
STATE_FILE = "trainer_state.pt"
_NUMPY_CORE = getattr(np, "_core", None) or np.core
# what a trainer state may hold besides tensors and plain Python values: numpy's legacy RNG state (a uint32 array)
STATE_SAFE_GLOBALS = [_NUMPY_CORE.multiarray._reconstruct, np.ndarray, np.dtype, type(np.dtype(np.uint32))]


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: the message names its path and what to do."""


class CorruptCheckpointError(CheckpointError):
    """A checkpoint's files are missing, truncated or unreadable (a resume skips it for an older one)."""


class UnsafeCheckpointError(CheckpointError):
    """A trainer state holds objects that weights-only loading refuses (unpickling them could run code)."""


def load_trainer_state(path: Path) -> dict[str, Any]:
    """trainer_state.pt, weights-only with the RNG allow-list; a refused object raises UnsafeCheckpointError."""
    with torch.serialization.safe_globals(STATE_SAFE_GLOBALS):
        try:
            state = torch.load(path, weights_only=True)
        except FileNotFoundError:
            raise CorruptCheckpointError(f"{path} is missing") from None
        except pickle.UnpicklingError as error:
            if "Weights only load failed" not in str(error):  # not a refused object: damaged bytes
                raise CorruptCheckpointError(f"{path} is unreadable ({_first_line(error)})") from None
            reason = str(error).splitlines()[-1][:300] if str(error) else type(error).__name__
            raise UnsafeCheckpointError(
                f"{path} holds an object that is not a tensor, a plain value or an RNG state, so it was not loaded "
                f"(unpickling it could run code; {reason}). Resume only from checkpoints rewardlab wrote; to "
                "start over, remove the checkpoint folder or train into a new output_dir."
            ) from None
        except (RuntimeError, EOFError, OSError, ValueError) as error:  # truncated or zero-byte: torch's zip reader
            raise CorruptCheckpointError(f"{path} is unreadable ({_first_line(error)})") from None
    if not isinstance(state, dict) or not {"step", "optimizer", "scheduler", "rng"} <= set(state):
        raise CorruptCheckpointError(f"{path} is not a rewardlab trainer state (no step, optimizer, scheduler and rng)")
    return state


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return (text.splitlines()[0][:200] if text else "") or type(error).__name__


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


def _atomic_dir(final: Path, write) -> Path:
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


def save_model(model: torch.nn.Module, tokenizer, path: Path, merge_lora: bool = False) -> None:
    """HF layout. With LoRA: the adapter (merge_lora=False) or the merged full model plus adapter/ (True)."""
    if is_peft(model) and merge_lora:
        model.save_pretrained(path / "adapter")
        merged = _merged_copy(model)
        merged.save_pretrained(path, safe_serialization=True)
    else:
        model.save_pretrained(path, safe_serialization=True)
    tokenizer.save_pretrained(path)


def _merged_copy(model: torch.nn.Module) -> torch.nn.Module:
    import copy

    return copy.deepcopy(model).merge_and_unload()


def save_checkpoint(
    run_dir: Path, step: int, model, tokenizer, optimizer, scheduler, extra: dict[str, Any], keep: int
) -> Path:
    def write(tmp: Path) -> None:
        save_model(model, tokenizer, tmp)
        state = {
            "step": step,
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "rng": rng_state(),
            "extra": extra,
        }
        torch.save(state, tmp / STATE_FILE)

    path = _atomic_dir(run_dir / f"checkpoint-{step}", write)
    for old in list_checkpoints(run_dir)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return path


def save_final(run_dir: Path, model, tokenizer, name: str = "final") -> Path:
    """final/: loadable with AutoModelForCausalLM.from_pretrained (LoRA merged, adapter in final/adapter)."""
    return _atomic_dir(run_dir / name, lambda tmp: save_model(model, tokenizer, tmp, merge_lora=True))


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoints, oldest first (a half-written one is never named checkpoint-N)."""
    if not run_dir.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in run_dir.iterdir() if (m := CHECKPOINT_RE.match(p.name))]
    return [p for _, p in sorted(found) if (p / STATE_FILE).is_file()]


def _read_weights(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except FileNotFoundError:
        raise CorruptCheckpointError(f"{path} is missing") from None
    except Exception as error:  # safetensors raises its own SafetensorError (and OSError) on damaged files
        raise CorruptCheckpointError(f"{path} is unreadable ({_first_line(error)})") from None


def load_checkpoint(path: Path, model, optimizer, scheduler) -> dict[str, Any]:
    """Restore weights, optimizer, scheduler and RNG from checkpoint `path`; returns the saved state.

    Everything is read before anything is changed, so a damaged checkpoint (CorruptCheckpointError,
    naming the file) leaves the model as it was and an older checkpoint can be tried instead.
    """
    state = load_trainer_state(path / STATE_FILE)
    if is_peft(model):
        from peft import set_peft_model_state_dict

        set_peft_model_state_dict(model, _read_weights(path / "adapter_model.safetensors"))
    else:
        state_dict = _read_weights(path / "model.safetensors")
        missing, unexpected = model.load_state_dict(state_dict, strict=False)
        # tied embeddings are saved once; anything else missing means the checkpoint does not fit
        missing = [k for k in missing if "lm_head" not in k]
        if missing or unexpected:
            raise CheckpointError(f"checkpoint {path} does not match the model: missing {missing[:5]}, unexpected "
                                  f"{unexpected[:5]}; resume with the model and model_config the run started with")
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    restore_rng_state(state["rng"])
    return state
