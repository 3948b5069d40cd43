"""A saved reward model as a reward: its score of prompt + completion (`reward_model` in the online config)."""

from __future__ import annotations

import torch

from ..models import load_reward_model, reward_scores


class RewardModelScorer:
    """Scores rollouts with a saved reward model (`rewardlab train rm`): one float per prompt + completion,
    read at the last real token, from the very token ids the policy produced (no re-tokenisation)."""

    def __init__(self, path: str, cfg, device: torch.device):
        with torch.random.fork_rng(devices=[]):
            self.model, _ = load_reward_model(path, dtype=cfg.dtype, device=str(device), seed=cfg.seed)
        self.model.requires_grad_(False).eval()

    @torch.no_grad()
    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return reward_scores(self.model, input_ids, attention_mask)
