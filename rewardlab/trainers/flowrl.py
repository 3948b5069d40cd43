"""FlowRL's learned log-partition log Z(x) for the online driver (docs/algorithms.md#flowrl).

A small MLP reads the mean of the policy's last hidden states over the prompt's tokens. The
representation is taken without gradient, so the head learns log Z while the policy learns from the
trajectory-balance residual alone. The head has its own AdamW, travels in the run's checkpoints
(trainer_state.pt) and is never part of the exported model in final/.
"""

from __future__ import annotations

import torch
from torch import nn

from ..config import GRPOConfig
from ..models import is_peft, last_hidden_states
from .lifecycle import optimizer_step


class LogZHead(nn.Module):
    """(Linear -> GELU -> LayerNorm) x 2, then Linear -> 1: [B, H] -> [B]."""

    def __init__(self, hidden_size: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(hidden_size, hidden_size), nn.GELU(), nn.LayerNorm(hidden_size),
            nn.Linear(hidden_size, hidden_size), nn.GELU(), nn.LayerNorm(hidden_size),
            nn.Linear(hidden_size, 1),
        )

    def forward(self, prompt_representation: torch.Tensor) -> torch.Tensor:
        return self.net(prompt_representation).squeeze(-1)


class LogZ:
    """log Z(x) for a batch of prompts: `__call__(policy, prompt_ids, prompt_mask) -> [B]`, `step()` after backward."""

    def __init__(self, cfg: GRPOConfig, policy: torch.nn.Module, device: torch.device):
        hidden_size = policy.config.hidden_size
        with torch.random.fork_rng(devices=[]):  # building the head must not move the run's RNG (exact resume)
            torch.manual_seed(cfg.seed + 2)
            self.head = LogZHead(hidden_size).to(device=device, dtype=torch.float32)
        self.optimizer = torch.optim.AdamW(self.head.parameters(), lr=cfg.log_z_learning_rate, weight_decay=0.0)
        self.max_grad_norm = cfg.max_grad_norm

    def __call__(self, policy: torch.nn.Module, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor) -> torch.Tensor:
        inner = policy.get_base_model() if is_peft(policy) else policy
        with torch.no_grad():
            hidden = last_hidden_states(inner.get_decoder(), prompt_ids, prompt_mask).float()
            valid = prompt_mask.unsqueeze(-1).to(hidden.dtype)
            representation = (hidden * valid).sum(1) / valid.sum(1).clamp(min=1)
        return self.head(representation)

    def step(self) -> float:
        return optimizer_step(self.head.parameters(), self.optimizer, self.max_grad_norm)

    def state_dict(self) -> dict:
        return {"head": self.head.state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.head.load_state_dict(state["head"])
        self.optimizer.load_state_dict(state["optimizer"])
