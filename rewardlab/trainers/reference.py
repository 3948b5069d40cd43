"""The frozen reference policy (online loop, DPO family): the LoRA base with the adapter off, or a frozen copy."""

from __future__ import annotations

from contextlib import nullcontext

import torch

from ..config import CommonConfig
from ..models import is_peft, load_policy


class Reference:
    """The frozen reference policy: cfg.ref_model when the config has one (DPO), else the starting model:
    with LoRA the base with the adapter switched off (no second copy), otherwise a frozen copy loaded
    afresh from cfg.model, not copied from the policy (after --resume the policy has moved)."""

    def __init__(self, policy: torch.nn.Module, cfg: CommonConfig):
        self.policy = policy
        self.copy = None
        ref_model = getattr(cfg, "ref_model", "")
        if ref_model or not is_peft(policy):
            model_config = None if ref_model else cfg.model_config
            model, _ = load_policy(ref_model or cfg.model, dtype=cfg.dtype, device=cfg.device, seed=cfg.seed, model_config=model_config)
            self.copy = model.requires_grad_(False).eval()

    def context(self):
        return self.policy.disable_adapter() if self.copy is None else nullcontext()

    def model(self) -> torch.nn.Module:
        return self.policy if self.copy is None else self.copy
