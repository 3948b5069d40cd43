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
from ..models.loading import local_base_dir
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


def save_model(model: torch.nn.Module, tokenizer, path: Path, merge_lora: bool = False, base_dir: Path | None = None) -> None:
    """HF layout. With LoRA: the adapter (merge_lora=False) or the merged full model plus adapter/ (True).

    An adapter's adapter_config.json names its base (base_model_name_or_path) as a local directory, so that
    peft's AutoPeftModelFor...from_pretrained(adapter) loads it offline: the directory the base was loaded
    from, when from_pretrained rebuilds it from there (local_base_dir), else `base_dir`, where a copy of the
    base (safetensors and tokenizer) is written once per run: the built-in tiny model, a GGUF file's
    dequantised weights, a reward model's backbone with its starting head."""
    if is_peft(model):
        base = local_base_dir(model) or (save_base_copy(model, tokenizer, base_dir) if base_dir is not None else None)
        if base is not None:
            for config in model.peft_config.values():
                config.base_model_name_or_path = str(base)
    if is_peft(model) and merge_lora:
        model.save_pretrained(path / "adapter")
        tokenizer.save_pretrained(path / "adapter")  # else AutoPeftModel... looks the tokenizer up on the Hub
        merged = _merged_copy(model)
        merged.save_pretrained(path, safe_serialization=True)
    else:
        model.save_pretrained(path, safe_serialization=True)
    tokenizer.save_pretrained(path)


def save_base_copy(model: torch.nn.Module, tokenizer, base_dir: Path) -> Path:
    """The LoRA model's base, without its adapter, saved to base_dir (atomically) the first time this
    process saves the model there; its absolute path."""
    import copy

    base_dir = Path(base_dir).resolve()
    if getattr(model, "_rewardlab_base_copy", None) == str(base_dir) and base_dir.is_dir():
        return base_dir

    def write(tmp: Path) -> None:
        base = copy.deepcopy(model).unload()  # the adapter layers removed, nothing merged: the base as loaded
        base.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)

    atomic_dir(base_dir, write)
    model._rewardlab_base_copy = str(base_dir)
    return base_dir


def _merged_copy(model: torch.nn.Module) -> torch.nn.Module:
    import copy

    return copy.deepcopy(model).merge_and_unload()


BASE_DIR = "base"  # <run_dir>/base: the copy of a LoRA run's base that its adapters name (save_model)


def save_checkpoint(
    run_dir: Path, step: int, model, tokenizer, optimizer, scheduler, extra: dict[str, Any], keep: int
) -> Path:
    def write(tmp: Path) -> None:
        save_model(model, tokenizer, tmp, base_dir=run_dir / BASE_DIR)
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
    """final/: loadable with AutoModelForCausalLM.from_pretrained (LoRA merged, adapter in final/adapter,
    loadable with peft's AutoPeftModelForCausalLM.from_pretrained)."""
    return atomic_dir(run_dir / name, lambda tmp: save_model(model, tokenizer, tmp, merge_lora=True,
                                                             base_dir=run_dir / BASE_DIR))


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
