"""One short driver per family. `train(method, config)` dispatches by method name."""

from __future__ import annotations

from .distill import train_distill
from .online import train_grpo
from .preference import train_dpo
from .process_reward import train_prm
from .rejection import train_rs
from .reward_model import train_reward_model
from .sft import train_sft

TRAINERS = {"sft": train_sft, "grpo": train_grpo, "dr_grpo": train_grpo, "dapo": train_grpo, "gspo": train_grpo, "rloo": train_grpo}
TRAINERS.update({"ppo": train_grpo, "reinforce_pp": train_grpo})
TRAINERS.update({"flowrl": train_grpo, "sdpo": train_grpo, "rlsd": train_grpo, "srpo": train_grpo, "distill": train_distill, "reopold": train_distill})
TRAINERS.update({"rs": train_rs, "prm": train_prm})
TRAINERS.update({"rm": train_reward_model, "dpo": train_dpo, "ipo": train_dpo, "simpo": train_dpo, "kto": train_dpo})

__all__ = ["TRAINERS", "train_distill", "train_dpo", "train_grpo", "train_prm", "train_reward_model", "train_rs", "train_sft"]
