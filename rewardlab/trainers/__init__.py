"""One short driver per family. `train(method, config)` dispatches by method name."""

from __future__ import annotations

from .online import train_grpo
from .sft import train_sft

TRAINERS = {"sft": train_sft, "grpo": train_grpo, "dr_grpo": train_grpo, "dapo": train_grpo, "gspo": train_grpo, "rloo": train_grpo}

__all__ = ["TRAINERS", "train_grpo", "train_sft"]
