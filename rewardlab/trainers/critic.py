"""PPO's critic for the online driver (the reward model's scoring is rewards/reward_model.py).

The critic is a separate model: a backbone with a linear head that reads a value V(s_t) at every position
(docs/algorithms.md#value-loss). By default it starts from the reward model when one is configured (it already
knows what scores well), otherwise from the policy's starting weights with a fresh head. It has its own
AdamW and learning-rate schedule, and its weights and optimizer travel in the policy's checkpoints.
"""

from __future__ import annotations

import torch

from ..config import GRPOConfig
from ..models import backbone_and_head, last_hidden_states, load_reward_model
from .lifecycle import lr_lambda, optimizer_step


class Critic:
    """V(s_t) for the completion tokens of a batch: `values(...) -> [B, C]`, then `step()` after backward."""

    def __init__(self, cfg: GRPOConfig, device: torch.device):
        source = cfg.value_model or cfg.reward_model or cfg.model
        with torch.random.fork_rng(devices=[]):  # building a model must not move the run's RNG (exact resume)
            self.model, _ = load_reward_model(
                source, dtype=cfg.dtype, device=str(device), seed=cfg.seed + 1, model_config=cfg.model_config
            )
        self.model.train()
        self.source = source
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(params, lr=cfg.value_learning_rate or cfg.learning_rate, weight_decay=0.0)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lr_lambda(cfg.lr_scheduler, cfg.warmup_steps, cfg.max_steps * cfg.num_iterations)
        )
        self.max_grad_norm = cfg.max_grad_norm

    def values(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, num_completion_tokens: int) -> torch.Tensor:
        """[B, C] float32: the value read at the position before each completion token (the state in
        which that token was chosen), aligned with token_logprobs."""
        backbone, head = backbone_and_head(self.model)
        hidden = last_hidden_states(backbone, input_ids, attention_mask)
        C = num_completion_tokens
        return head(hidden[:, -C - 1 : -1]).squeeze(-1).float()

    def step(self) -> float:
        return optimizer_step(self.model.parameters(), self.optimizer, self.max_grad_norm, self.scheduler)

    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
