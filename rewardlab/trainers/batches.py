"""What the online loop's first two stages hand on: a ScoredBatch (rollout plus rewards), and where it comes from.

    PromptStream(records, seed).next(k)     the next k training records, in a seeded order that resumes
    TaskRollouts(...).rollout_and_score(r)  task prompts -> generate -> rewards.scoring.score
    EnvRollouts(...).rollout_and_score(r)   episode seeds -> play the text environment (env_rollouts.py)
    dynamic_sample(cfg, batch, ...)         DAPO: keep groups whose rewards differ, refill from the stream

Both rollout sources return a ScoredBatch and expose evaluate() -> (score, per-sample rows).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from ..algos import nonzero_variance_groups
from ..rewards.base import RewardLogs
from ..rewards.scoring import score
from ..rollout import Rollout, concat_rollouts, select_rows
from . import gather
from .evaluate import evaluate_policy
from .inputs import encode_prompt


@dataclass
class ScoredBatch:
    """B = prompts x num_generations rows: the rollout, each row's total reward (on the model's device) and
    each reward function's (or environment metric's) values on CPU, and the record each row came from."""

    rollout: Rollout
    rewards: torch.Tensor
    per_function: dict[str, torch.Tensor]
    records: list[dict]
    truncated_prompts: int = 0  # prompts cut to max_prompt_length
    score_time: float = 0.0  # seconds spent in reward functions and the reward model
    gold: list[torch.Tensor] = field(default_factory=list)  # reward-model runs: the task's reward, every row scored
    # what the reward functions logged: log_metric's values (every reward call behind the batch) and
    # log_extra's columns (one value per row)
    logs: RewardLogs = field(default_factory=RewardLogs)

    def __len__(self) -> int:
        return len(self.records)

    def from_prompt(self, first: int) -> ScoredBatch:
        """Group ids counted from the step's prompt `first` (this process's first prompt, over several): the ids
        are global, so gathered rows of one group share it."""
        if first:
            self.rollout.group_index = self.rollout.group_index + first
        return self

    def select(self, rows: torch.Tensor) -> ScoredBatch:
        """The given rows, in order (group ids renumbered)."""
        kept = rows.tolist()
        return replace(self, rollout=select_rows(self.rollout, rows), rewards=self.rewards[rows],
                       per_function={k: v[rows.cpu()] for k, v in self.per_function.items()},
                       records=[self.records[i] for i in kept],
                       logs=RewardLogs(self.logs.metrics, {k: [v[i] for i in kept] for k, v in self.logs.extra.items()}))


def concat_batches(parts: list[ScoredBatch], pad_id: int) -> ScoredBatch:
    logs = RewardLogs()
    for part in parts:
        logs.merge(RewardLogs(part.logs.metrics))
    for column in dict.fromkeys(k for p in parts for k in p.logs.extra):  # a part without the column: None per row
        logs.extra[column] = [v for p in parts for v in p.logs.extra.get(column, [None] * len(p))]
    return ScoredBatch(
        concat_rollouts([p.rollout for p in parts], pad_id),
        torch.cat([p.rewards for p in parts]),
        {k: torch.cat([p.per_function[k] for p in parts]) for k in parts[0].per_function},
        [r for p in parts for r in p.records],
        parts[0].truncated_prompts,
        sum(p.score_time for p in parts),
        [g for p in parts for g in p.gold],
        logs,
    )


class PromptStream:
    """Training records in a seeded random order, cycling; `cursor` (saved in checkpoints) resumes it."""

    def __init__(self, records: list[dict], seed: int, cursor: int = 0):
        self.records, self.cursor = records, cursor
        self.order = torch.randperm(len(records), generator=torch.Generator().manual_seed(seed)).tolist()

    def next(self, count: int) -> list[dict]:
        batch = [self.records[self.order[(self.cursor + i) % len(self.order)]] for i in range(count)]
        self.cursor += count
        return batch


class TaskRollouts:
    """Task prompts -> num_generations completions each -> rewards: the reward functions plus, when given,
    the reward model's score; the DAPO overlong and missing-EOS shaping; the gold reward of reward-model runs."""

    def __init__(self, cfg, model, engine, sampling, tokenizer, rewards_fn, scorer, gold_fn, held_out, verify, device):
        self.cfg, self.model, self.engine, self.sampling, self.tokenizer = cfg, model, engine, sampling, tokenizer
        self.rewards_fn, self.scorer, self.gold_fn = rewards_fn, scorer, gold_fn
        self.held_out, self.verify, self.device = held_out, verify, device
        self.last_eval: dict[str, float] = {}  # tasks report no environment metrics
        self.last_rewards: dict[str, float] = {}  # the latest evaluation's eval/rewards/<name>/mean (and log_metric)

    def rollout_and_score(self, batch: list[dict]) -> ScoredBatch:
        cfg, tok = self.cfg, self.tokenizer
        encoded = [encode_prompt(r["prompt"], tok, cfg.max_prompt_length) for r in batch]
        rollout = self.engine.generate([ids for ids, _ in encoded], cfg.num_generations, self.sampling)
        expanded = [r for r in batch for _ in range(cfg.num_generations)]
        t_score = time.time()
        scores = score(cfg, rollout, expanded, self.rewards_fn, self.scorer, self.gold_fn, self.device)
        return ScoredBatch(rollout, scores.total, scores.per_function, expanded, sum(t for _, t in encoded),
                           time.time() - t_score, scores.gold, scores.logs)

    def evaluate(self) -> tuple[float | None, list[dict[str, Any]]]:
        """Greedy completions of the held-out records: the accuracy by the verifier (None without one) and the
        per-sample rows; each reward function's mean goes to last_rewards (rewards judged as in training)."""
        result = evaluate_policy(self.model, self.tokenizer, self.held_out, self.verify, self.cfg.max_completion_length,
                                 self.rewards_fn)
        self.last_rewards = {k: v for k, v in result.metrics().items() if k != "eval/accuracy"}
        return result.accuracy, result.rows


def dynamic_sample(cfg, batch: ScoredBatch, source, prompts: PromptStream, pad_id: int) -> ScoredBatch:
    """DAPO: keep groups whose rewards differ; sample fresh prompts until the batch is full again (at most
    max_resample_rounds more rounds). Nothing to learn from at all: the original batch is kept."""
    parts, current, score_time, gold = [], batch, 0.0, list(batch.gold)
    metrics = RewardLogs()  # log_metric values of every round, kept or not
    metrics.merge(RewardLogs(batch.logs.metrics))
    for round_ in range(cfg.max_resample_rounds + 1):
        if round_ > 0:
            current = source.rollout_and_score(prompts.next(cfg.prompts_per_step))
            score_time, gold = score_time + current.score_time, gold + current.gold
            metrics.merge(RewardLogs(current.logs.metrics))
        informative = nonzero_variance_groups(*gather.current().rows(current.rewards, current.rollout.group_index), cfg.prompts_per_step)
        keep = informative[current.rollout.group_index]
        rows = keep.nonzero().flatten()
        if len(rows):
            parts.append(current.select(rows))
        if sum(len(p) for p in parts) >= cfg.batch_size:
            break
    if not parts:
        return replace(batch, score_time=batch.score_time + score_time, gold=gold,
                       logs=RewardLogs(metrics.metrics, batch.logs.extra))
    merged = concat_batches(parts, pad_id)
    merged = merged.select(torch.arange(min(len(merged), cfg.batch_size)))
    return replace(merged, truncated_prompts=batch.truncated_prompts, score_time=batch.score_time + score_time, gold=gold,
                   logs=RewardLogs(metrics.metrics, merged.logs.extra))
