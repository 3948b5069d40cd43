"""Checkpoints that survive a kill: written to a temporary folder, then renamed into place.

checkpoint-<step>/ holds the model (HF save_pretrained, safetensors; the adapter only with LoRA), the
tokenizer, and trainer_state.pt (optimizer, scheduler, RNG states, step, extra trainer state).

trainer_state.pt is read weights-only: tensors, plain Python values and, by an explicit allow-list, numpy's
RNG state array. Anything else in it (an object planted to run code when unpickled) makes loading fail
with an error naming the file, instead of running.

The model-free parts (atomic folders, listing and pruning checkpoints, weights-only loading, RNG states) live
in rewardlab/runs.py, shared with classic RL; they are re-exported here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..models import is_peft
from ..runs import (
    CHECKPOINT_RE,
    STATE_FILE,
    STATE_SAFE_GLOBALS,
    CheckpointError,
    CorruptCheckpointError,
    UnsafeCheckpointError,
    atomic_dir,
    first_line,
    list_checkpoints,
    load_state,
    restore_rng_state,
    rng_state,
    set_seed,
    write_checkpoint,
)

__all__ = [
    "CHECKPOINT_RE", "STATE_FILE", "STATE_SAFE_GLOBALS", "CheckpointError", "CorruptCheckpointError",
    "UnsafeCheckpointError", "list_checkpoints", "load_checkpoint", "load_trainer_state", "restore_rng_state",
    "rng_state", "save_checkpoint", "save_final", "save_model", "set_seed",
]


def load_trainer_state(path: Path) -> dict[str, Any]:
    """trainer_state.pt, weights-only with the RNG allow-list; a refused object raises UnsafeCheckpointError."""
    return load_state(path, ("step", "optimizer", "scheduler", "rng"))


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

    return write_checkpoint(run_dir, step, write, keep)


def save_final(run_dir: Path, model, tokenizer, name: str = "final") -> Path:
    """final/: loadable with AutoModelForCausalLM.from_pretrained (LoRA merged, adapter in final/adapter)."""
    return atomic_dir(run_dir / name, lambda tmp: save_model(model, tokenizer, tmp, merge_lora=True))


def _read_weights(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except FileNotFoundError:
        raise CorruptCheckpointError(f"{path} is missing") from None
    except Exception as error:  # safetensors raises its own SafetensorError (and OSError) on damaged files
        raise CorruptCheckpointError(f"{path} is unreadable ({first_line(error)})") from None


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
