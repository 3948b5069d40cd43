"""Stages 3-5 of the online loop on one ScoredBatch: advantages -> loss -> optimizer step(s).

    plan = loss_plan(cfg)                       the estimator, policy loss and aggregation the config names
    parts = LoopParts.build(cfg, model, ...)    reference, KL controller, critic, monitor, log Z, self-teacher
    result = update_policy(cfg, ctx, plan, parts, batch)

The loss of one minibatch (`minibatch_loss`) is the policy loss on the advantages, changed by the objective's
hooks (objectives.py: sdpo/srpo's per-token self-distillation), plus beta * KL to the reference (outcome-level
estimators; per-token ones put the KL in the reward), aggregated per loss_type; an objective's own loss
replaces it (flowrl), and PPO adds its value loss.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch

from ..algos import (
    ADVANTAGES,
    AGGREGATIONS,
    LOSS_TYPES,
    POLICY_LOSSES,
    AdaptiveKLController,
    Estimator,
    FixedKLController,
    kl_estimate,
    mismatch_metrics,
    mismatch_weights,
    per_token_rewards,
    score_on_last_token,
    value_loss,
)
from ..config import GRPOConfig
from ..models import token_logprobs
from ..models.logprobs import PolicyLogProbs
from ..monitor import HackingMonitor
from ..rewards.reward_model import RewardModelScorer
from . import gather
from .batches import ScoredBatch
from .critic import Critic
from .flowrl import LogZ
from .objectives import OBJECTIVES, Objective
from .reference import Reference
from .self_distill import SelfTeacher


@dataclass
class LossPlan:
    """The registry entries a config picks, resolved (and checked) before anything is written."""

    aggregation: str
    estimator: Estimator
    policy_loss_fn: Any
    aggregate: Any
    objective: Objective

    @property
    def token_level(self) -> bool:
        return self.estimator.token_level


def loss_plan(cfg: GRPOConfig) -> LossPlan:
    aggregation = LOSS_TYPES.get(cfg.loss_type, cfg.loss_type)
    return LossPlan(aggregation, ADVANTAGES[cfg.advantage], POLICY_LOSSES[cfg.policy_loss], AGGREGATIONS[aggregation],
                    OBJECTIVES[cfg.objective])


@dataclass
class LoopParts:
    """Everything besides the policy that the loop trains or consults; None where the config does not use it."""

    logprobs: torch.nn.Module  # the policy's token_logprobs as a module: the loss's forward (wrapped over processes)
    reference: Reference | None
    kl_ctl: Any
    critic: Critic | None
    scorer: RewardModelScorer | None  # the reward model's score of prompt + completion (reward_model)
    monitor: HackingMonitor | None
    log_z: LogZ | None
    teacher: SelfTeacher | None

    @classmethod
    def build(cls, cfg: GRPOConfig, plan: LossPlan, model, tokenizer, device) -> LoopParts:
        """In this order (each may draw from the RNG while it loads)."""
        needs_reference = cfg.beta > 0 or cfg.log_kl or plan.token_level or cfg.reward_model or plan.objective.needs_reference
        reference = Reference(model, cfg) if needs_reference else None
        kl_ctl = AdaptiveKLController(cfg.beta, cfg.kl_target, cfg.kl_horizon) if cfg.kl_target else FixedKLController(cfg.beta)
        critic = Critic(cfg, device) if plan.estimator.needs_values else None
        scorer = RewardModelScorer(cfg.reward_model, cfg, device) if cfg.reward_model else None
        monitor = HackingMonitor(cfg.hacking_patience, cfg.hacking_tolerance) if scorer is not None and not cfg.env else None
        log_z = LogZ(cfg, model, device) if plan.objective.log_z else None  # FlowRL's head, not exported
        teacher = SelfTeacher(cfg, model, tokenizer) if plan.objective.self_teacher else None
        return cls(gather.current().wrap(PolicyLogProbs(model)), reference, kl_ctl, critic, scorer, monitor, log_z, teacher)

    def stateful(self) -> dict[str, Any]:
        """What a checkpoint carries besides the policy (None: not used by this run)."""
        return {"critic": self.critic, "kl_controller": self.kl_ctl, "hacking_monitor": self.monitor,
                "log_z": self.log_z, "self_teacher": self.teacher}

    def load_state(self, saved: dict[str, Any]) -> None:
        for name, part in self.stateful().items():
            if part is not None and name in saved:
                part.load_state_dict(saved[name])

    def state(self, prompts) -> dict[str, Any]:
        """What a checkpoint saves besides the policy: these parts and the position in the prompt stream."""
        return {"data_cursor": prompts.cursor, **{name: part.state_dict() for name, part in self.stateful().items() if part is not None}}


@dataclass
class Tensors:
    """A ScoredBatch's tensors as the update reads them (masks adjusted, log-probs of the sampling time)."""

    input_ids: torch.Tensor
    attention: torch.Tensor
    completion_mask: torch.Tensor  # truncated completions zeroed with mask_truncated_completions
    truncated: torch.Tensor
    C: int  # completion width
    old_logp: torch.Tensor | None  # several updates per rollout: the policy at sampling time
    ref_logp: torch.Tensor | None
    sampled_logp: torch.Tensor  # the sampling policy's log-probs (old-policy pass, else the engine's)
    is_weight: torch.Tensor | None = None  # an engine with its own log-probs: trainer / engine importance weights
    mismatch: dict[str, float] | None = None  # and how far its log-probs are from the trainer's


@dataclass
class UpdateResult:
    stats: dict[str, float]
    token_stats: dict[str, float]
    truncated: torch.Tensor
    ref_logp: torch.Tensor | None
    seconds: float


def batch_tensors(cfg: GRPOConfig, model, parts: LoopParts, batch: ScoredBatch, device) -> Tensors:
    rollout = batch.rollout
    completion_mask = rollout.completion_mask.clone()
    truncated = torch.tensor([r == "length" for r in rollout.finish_reason], device=device)
    if cfg.mask_truncated_completions:
        completion_mask[truncated] = 0
    input_ids, attention = rollout.sequence_inputs()
    C = rollout.completion_ids.shape[1]
    # Old-policy log-probs when several updates reuse the batch, or when the engine's log-probs are its own (the
    # trainer's recomputation is then the old policy); otherwise old = current (detached).
    engine_logp = rollout.logprobs_source == "engine"
    with torch.no_grad():
        old_logp = token_logprobs(model, input_ids, attention, C, cfg.temperature, **sampler_filter(cfg))[0] \
            if cfg.num_iterations > 1 or engine_logp else None
        ref_logp = None
        if parts.reference is not None:
            with parts.reference.context():
                ref_logp = token_logprobs(parts.reference.model(), input_ids, attention, C, cfg.temperature)[0]
    sampled_logp = old_logp if old_logp is not None else rollout.sampled_logprobs.to(device)
    is_weight, mismatch = None, None
    if engine_logp:
        engine = rollout.sampled_logprobs.to(device)
        mismatch = mismatch_metrics(old_logp, engine, completion_mask)
        if cfg.vllm_importance_sampling_correction:
            is_weight, weight_metrics = mismatch_weights(old_logp, engine, completion_mask, cfg.vllm_importance_sampling_mode,
                                                         cfg.vllm_importance_sampling_clip_min, cfg.vllm_importance_sampling_clip_max)
            mismatch.update(weight_metrics)
    return Tensors(input_ids, attention, completion_mask, truncated, C, old_logp, ref_logp, sampled_logp, is_weight, mismatch)


def sampler_filter(cfg: GRPOConfig) -> dict[str, Any]:
    """The policy's log-probs are recomputed under the distribution the engine sampled from (the reference's
    are not filtered: a sampled token may lie outside its top-k)."""
    return {"top_k": cfg.top_k, "top_p": cfg.top_p}


def compute_advantages(cfg: GRPOConfig, plan: LossPlan, parts: LoopParts, batch: ScoredBatch, t: Tensors, teacher_scores):
    """The estimator on token rewards: each completion's score on its last token, and for the per-token estimators
    (gae, reinforce_pp) the KL penalty on every token. Returns (advantages [B,T], returns, old values, token stats)."""
    estimator, kl_ctl, critic = plan.estimator, parts.kl_ctl, parts.critic
    token_stats: dict[str, float] = {}
    if estimator.token_level:
        token_rewards, token_kl = per_token_rewards(batch.rewards, t.sampled_logp, t.ref_logp, t.completion_mask, kl_ctl.value)
        sequence_kl = gather.current().mean(float(token_kl.sum(1).mean()))
        kl_ctl.update(sequence_kl, t.input_ids.shape[0])
        token_stats = {"kl_penalty/sequence_kl": sequence_kl, "kl_penalty/beta": kl_ctl.value}
    else:
        token_rewards = score_on_last_token(batch.rewards, t.completion_mask)
    old_values = None
    if critic is not None:
        with torch.no_grad():
            old_values = critic.values(t.input_ids, t.attention, t.C)
    options = {name: getattr(cfg, name) for name in estimator.options}
    group = gather.current()  # the estimator sees every process's rows; each keeps its own
    advantages, returns = group.local(*estimator(*group.rows(token_rewards, t.completion_mask, batch.rollout.group_index,
                                                             old_values), **options))
    if critic is not None:
        valid = t.completion_mask.bool()
        token_stats.update({"values/mean": float(old_values[valid].mean()), "values/returns_mean": float(returns[valid].mean())})
    if plan.objective.advantages is not None:  # rlsd: per-token weights from the self-teacher
        advantages = plan.objective.advantages(cfg, advantages, teacher_scores, t)
    return advantages, returns, old_values, token_stats


def minibatch_loss(cfg, plan: LossPlan, parts: LoopParts, model, batch: ScoredBatch, t: Tensors, rows: slice,
                   advantages, returns, old_values, teacher_scores) -> tuple[torch.Tensor, dict[str, float], Any]:
    """The loss of rows `rows` and its metrics (see the module docstring); also the token entropies."""
    kl_ctl, critic, rollout, rewards = parts.kl_ctl, parts.critic, batch.rollout, batch.rewards
    mask = t.completion_mask[rows]
    logp, entropy = parts.logprobs(t.input_ids[rows], t.attention[rows], t.C, cfg.temperature, **sampler_filter(cfg))
    old = t.old_logp[rows] if t.old_logp is not None else logp.detach()
    options = {arg: getattr(cfg, name) for arg, name in getattr(plan.policy_loss_fn, "options", {}).items()}  # sapo's temperatures
    policy_loss = partial(plan.policy_loss_fn, **options)
    per_token, loss_metrics = policy_loss(logp, old, advantages[rows], mask, cfg.epsilon, cfg.epsilon_high or None)
    if t.is_weight is not None:  # the engine sampled from its own copy: weight by trainer / engine (TIS)
        per_token = per_token * t.is_weight[rows]
    loss_metrics["approx_kl"] = approx_kl(logp, old, mask)
    objective = plan.objective
    if objective.token_loss is not None:  # sdpo, srpo
        per_token, objective_metrics = objective.token_loss(cfg, per_token, logp, old, teacher_scores and teacher_scores.rows(rows), rewards[rows], mask)
        loss_metrics.update(objective_metrics)
    if t.ref_logp is not None:
        kl = kl_estimate(logp, t.ref_logp[rows], cfg.kl_estimator)
        if kl_ctl.value > 0 and not plan.token_level:
            per_token = per_token + kl_ctl.value * kl
        loss_metrics["kl"] = float((kl.detach() * mask).sum() / mask.sum().clamp(min=1))
    loss = plan.aggregate(per_token, mask, cfg.max_completion_length)
    if objective.loss is not None:  # flowrl: its own loss replaces the aggregated surrogate
        loss, objective_metrics = objective.loss(cfg, parts, model, rollout, t, rows, logp, old, advantages, mask)
        loss_metrics.update(objective_metrics)
    if critic is not None:
        values = critic.values(t.input_ids[rows], t.attention[rows], t.C)
        v_loss, v_metrics = value_loss(values, old_values[rows], returns[rows], mask, cfg.cliprange_value or None)
        loss_metrics.update({"policy_loss": loss.item(), "value_loss": v_loss.item(), **v_metrics})
        loss = loss + cfg.vf_coef * v_loss
    loss_metrics["entropy"] = float((entropy * mask).sum() / mask.sum().clamp(min=1))
    return loss, loss_metrics, mask


def approx_kl(logp: torch.Tensor, old: torch.Tensor, mask: torch.Tensor) -> float:
    """KL(old policy || current) over the valid tokens, the k3 estimate (r - 1) - log r with r = p / p_old:
    0 on the first pass over a rollout, then how far the updates have moved the policy."""
    with torch.no_grad():
        log_ratio = torch.where(mask.bool(), logp - old, 0.0)
        return float(((log_ratio.exp() - 1) - log_ratio).sum() / mask.sum().clamp(min=1))


def minibatch_weight(loss_type: str, mask: torch.Tensor, rows: slice, total_rows: int) -> float:
    """Share of the full-batch loss a minibatch carries, so accumulated gradients equal the full batch's. Over
    several processes the full batch is all of theirs, and the share is multiplied by their number, which the
    gradient averaging divides by again."""
    group = gather.current()
    if loss_type == "token_mean":
        return float(mask[rows].sum() / group.token_count(mask).clamp(min=1)) * group.world_size
    return (rows.stop - rows.start) / group.count(total_rows) * group.world_size


def update_policy(cfg: GRPOConfig, ctx, plan: LossPlan, parts: LoopParts, batch: ScoredBatch, grad_step) -> UpdateResult:
    """Advantages, then num_iterations passes over the batch in minibatches, one optimizer step per pass."""
    model, device = ctx.model, next(ctx.model.parameters()).device
    started = time.time()
    model.train()
    t = batch_tensors(cfg, model, parts, batch, device)
    # sdpo/rlsd/srpo: the policy (or its EMA) re-prompted with a sibling's solution or the answer scores the same tokens
    teacher_scores = parts.teacher.score(model, batch.rollout, batch.records, batch.rewards) if parts.teacher is not None else None
    advantages, returns, old_values, token_stats = compute_advantages(cfg, plan, parts, batch, t, teacher_scores)

    rows_total = t.input_ids.shape[0]
    mb = cfg.mini_batch_size or rows_total
    group, passes = gather.current(), -(-rows_total // mb)
    if group.count(passes) != passes * group.world_size:  # every backward is a collective over the processes
        raise RuntimeError(f"process {group.rank} has {rows_total} rows in {passes} minibatches of {mb}, and another "
                           "process a different number of minibatches; give every process the same number of rows")
    stats: dict[str, float] = {}
    applied = 0
    for _ in range(cfg.num_iterations):
        pass_stats: dict[str, float] = {}
        for start in range(0, rows_total, mb):
            rows = slice(start, min(start + mb, rows_total))
            loss, loss_metrics, _ = minibatch_loss(cfg, plan, parts, model, batch, t, rows, advantages, returns, old_values, teacher_scores)
            weight = minibatch_weight(plan.aggregation if parts.log_z is None else "seq_mean_token_mean", t.completion_mask, rows, rows_total)
            (loss * weight).backward()
            loss_metrics["loss"] = loss.item()
            for key, value in loss_metrics.items():
                pass_stats[key] = pass_stats.get(key, 0.0) + value * weight
        # early stop (as CleanRL's target_kl): this pass's update is not applied, nor any later one
        if cfg.target_kl and applied and pass_stats["approx_kl"] > cfg.target_kl:
            for part in (ctx, parts.critic, parts.log_z):
                if part is not None:
                    part.optimizer.zero_grad(set_to_none=True)
            break
        for key, value in pass_stats.items():
            stats[key] = stats.get(key, 0.0) + value
        stats["grad_norm"] = grad_step(ctx, cfg.max_grad_norm)
        if parts.critic is not None:
            stats["value_grad_norm"] = parts.critic.step()
        if parts.log_z is not None:
            stats["log_z_grad_norm"] = parts.log_z.step()
        if parts.teacher is not None:
            parts.teacher.update(model)
        applied += 1
    for key in pass_stats:  # the mean over the passes applied
        stats[key] /= applied
    stats["update_passes"] = applied
    stats.update(t.mismatch or {})
    return UpdateResult(stats, token_stats, t.truncated, t.ref_logp, time.time() - started)
