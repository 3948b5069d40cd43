"""Checkpoints that survive a kill: written to a temporary folder, then renamed into place.

checkpoint-<step>/ holds the model (HF save_pretrained, safetensors; the adapter only with LoRA), the
tokenizer, and trainer_state.pt (optimizer, scheduler, RNG states, step, extra trainer state).
"""

from __future__ import annotations

import os
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
    write(tmp)
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


def load_checkpoint(path: Path, model, optimizer, scheduler) -> dict[str, Any]:
    """Restore weights, optimizer, scheduler and RNG from checkpoint `path`; returns the saved state."""
    from safetensors.torch import load_file

    if is_peft(model):
        from peft import set_peft_model_state_dict

        set_peft_model_state_dict(model, load_file(str(path / "adapter_model.safetensors")))
    else:
        state_dict = load_file(str(path / "model.safetensors"))
        missing, unexpected = model.load_state_dict(state_dict, strict=False)
        # tied embeddings are saved once; anything else missing means the checkpoint does not fit
        missing = [k for k in missing if "lm_head" not in k]
        if missing or unexpected:
            raise RuntimeError(f"checkpoint {path} does not match the model: missing {missing[:5]}, unexpected {unexpected[:5]}")
    state = torch.load(path / STATE_FILE, weights_only=False)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    restore_rng_state(state["rng"])
    return state
