"""One place where an online rollout gets its rewards: the reward functions, the reward model's score, DAPO's
overlong shaping and the missing-EOS penalty, and (for reward-model runs) the gold reward the monitor watches.

    score(cfg, rollout, records, rewards_fn, scorer, gold_fn, device) -> Scores(total, per_function, gold, logs)

`records` holds one record per rollout row. The total is on `device`; per-function values stay on CPU. `logs`
holds what the reward functions passed to TRL's log_metric and log_extra.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..algos import overlong_penalty
from ..rollout import Rollout
from .base import RewardLogs
from .calling import reward_kwargs


@dataclass
class Scores:
    total: torch.Tensor  # [B] the reward each row trains on
    per_function: dict[str, torch.Tensor]  # [B] each reward function's value (and "reward_model")
    gold: list[torch.Tensor]  # reward-model runs: the task's own reward of the same rows (empty otherwise)
    logs: RewardLogs = field(default_factory=RewardLogs)  # log_metric / log_extra calls of the reward functions


def score(cfg, rollout: Rollout, records: list[dict], rewards_fn, scorer, gold_fn, device) -> Scores:
    inputs = reward_kwargs(records, rollout.completions_text,
                           [ids[m.bool()].tolist() for ids, m in zip(rollout.completion_ids, rollout.completion_mask)])
    rewards, per_fn = rewards_fn(**inputs) if rewards_fn is not None else (torch.zeros(len(records)), {})
    logs = rewards_fn.last_logs if rewards_fn is not None else RewardLogs()
    if scorer is not None:
        proxy = scorer(*(t.to(device) for t in rollout.sequence_inputs())).cpu()
        rewards, per_fn = rewards + proxy, {**per_fn, "reward_model": proxy}
    gold = [gold_fn(**inputs)[0]] if gold_fn is not None else []
    if cfg.overlong_buffer:
        rewards = rewards + overlong_penalty(rollout.completion_lengths.cpu().float(), cfg.max_completion_length, cfg.overlong_buffer)
    if cfg.missing_eos_penalty:
        rewards = rewards - cfg.missing_eos_penalty * torch.tensor([r == "length" for r in rollout.finish_reason], dtype=rewards.dtype)
    return Scores(rewards.to(device), per_fn, gold, logs)
