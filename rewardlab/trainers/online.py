"""The online RL driver: rollout -> rewards -> advantages -> loss -> optimizer step.

GRPO, Dr. GRPO, DAPO, GSPO and RLOO are this one loop with different registry entries
(ADVANTAGES, POLICY_LOSSES, AGGREGATIONS) picked by the config.
"""

from __future__ import annotations

import time
from contextlib import nullcontext

import torch

from ..algos import (
    ADVANTAGES,
    AGGREGATIONS,
    POLICY_LOSSES,
    group_stats,
    kl_estimate,
    nonzero_variance_groups,
    overlong_penalty,
)
from ..config import GRPOConfig
from ..data import columns
from ..models import is_peft, load_policy, token_logprobs
from ..monitor import format_table, progress
from ..rewards import summary_metrics
from ..rollout import HFEngine, Rollout, SamplingParams, concat_rollouts, select_rows
from .checkpoint import save_checkpoint
from .env_rollouts import EnvRollouts, env_seed_records
from .evaluate import completions_for, evaluate_accuracy
from .inputs import encode_prompt, eval_records, preflight_rewards, reward_functions, train_records, verifier
from .setup import finish_run, grad_step, start_run

# TRL's loss_type names map onto rewardlab's aggregation names.
LOSS_TYPES = {"grpo": "seq_mean_token_mean", "dr_grpo": "seq_mean_token_sum_norm", "dapo": "token_mean", "bnpo": "token_mean"}


def advantage_options(cfg: GRPOConfig) -> dict:
    return {"scale_rewards": cfg.scale_rewards} if cfg.advantage == "grpo" else {}


class Reference:
    """The frozen reference policy: the LoRA base with the adapter off, or a frozen copy of the start."""

    def __init__(self, policy: torch.nn.Module, cfg: GRPOConfig | None):
        self.policy = policy
        self.copy = None
        if not is_peft(policy):
            # loaded afresh from cfg.model, not copied from the policy: after --resume the policy has moved
            model, _ = load_policy(cfg.model, dtype=cfg.dtype, device=cfg.device, seed=cfg.seed, model_config=cfg.model_config)
            self.copy = model.requires_grad_(False).eval()

    def context(self):
        return self.policy.disable_adapter() if self.copy is None else nullcontext()

    def model(self) -> torch.nn.Module:
        return self.policy if self.copy is None else self.copy


def sequence_inputs(rollout: Rollout) -> tuple[torch.Tensor, torch.Tensor]:
    # multi-turn episodes attend to the environment's tokens inside the completion (completion_mask
    # still keeps them out of the loss)
    attended = rollout.completion_mask if rollout.completion_attention_mask is None else rollout.completion_attention_mask
    return (
        torch.cat([rollout.prompt_ids, rollout.completion_ids], 1),
        torch.cat([rollout.prompt_mask, attended], 1),
    )


def minibatch_weight(loss_type: str, mask: torch.Tensor, rows: slice, total_rows: int) -> float:
    """Share of the full-batch loss a minibatch carries, so accumulated gradients equal the full batch's."""
    if loss_type == "token_mean":
        return float(mask[rows].sum() / mask.sum().clamp(min=1))
    return (rows.stop - rows.start) / total_rows


def train_grpo(cfg: GRPOConfig) -> dict:
    # Everything a user can get wrong is checked before the run directory or the model exist.
    aggregation = LOSS_TYPES.get(cfg.loss_type, cfg.loss_type)
    advantage_fn, policy_loss_fn, aggregate = ADVANTAGES[cfg.advantage], POLICY_LOSSES[cfg.policy_loss], AGGREGATIONS[aggregation]
    n_records = cfg.max_steps * cfg.prompts_per_step * (1 + cfg.max_resample_rounds * cfg.dynamic_sampling)
    if cfg.env:  # a text environment: each "prompt" is an episode seed, played num_generations times
        records = env_seed_records(cfg, n_records)
    else:
        rewards_fn = reward_functions(cfg)
        records = train_records(cfg, n_records)
        preflight_rewards(rewards_fn, records)
        verify = verifier(cfg)
        held_out = eval_records(cfg)

    ctx = start_run(cfg)
    model, tok = ctx.model, ctx.tokenizer
    device = next(model.parameters()).device
    reference = Reference(model, cfg) if (cfg.beta > 0 or cfg.log_kl) else None
    engine = HFEngine(model, tok)
    sampling = SamplingParams(cfg.max_completion_length, cfg.temperature, cfg.top_p, cfg.top_k)
    order = torch.randperm(len(records), generator=torch.Generator().manual_seed(cfg.seed)).tolist()
    cursor = ctx.resumed_state.get("extra", {}).get("data_cursor", 0)

    def next_prompts(count: int) -> list[dict]:
        nonlocal cursor
        batch = [records[order[(cursor + i) % len(order)]] for i in range(count)]
        cursor += count
        return batch

    def evaluate():
        return evaluate_accuracy(model, tok, held_out, verify, cfg.max_completion_length)

    def rollout_and_score(batch: list[dict]):
        encoded = [encode_prompt(r["prompt"], tok, cfg.max_prompt_length) for r in batch]
        rollout = engine.generate([ids for ids, _ in encoded], cfg.num_generations, sampling)
        expanded = [r for r in batch for _ in range(cfg.num_generations)]
        t_score = time.time()
        rewards, per_fn = rewards_fn(
            prompts=[r["prompt"] for r in expanded],
            completions=completions_for(expanded, rollout.completions_text),
            completion_ids=[ids[m.bool()].tolist() for ids, m in zip(rollout.completion_ids, rollout.completion_mask)],
            columns=columns(expanded),
        )
        if cfg.overlong_buffer:
            rewards = rewards + overlong_penalty(rollout.completion_lengths.cpu().float(), cfg.max_completion_length, cfg.overlong_buffer)
        return rollout, rewards.to(device), per_fn, expanded, sum(t for _, t in encoded), time.time() - t_score

    if cfg.env:  # the same loop on episodes: multi-turn rollouts and game evaluation (trainers/env_rollouts.py)
        episodes = EnvRollouts(cfg, model, tok, engine, sampling)
        rollout_and_score, evaluate = episodes.rollout_and_score, episodes.evaluate

    initial_eval = None
    if ctx.start_step == 0:
        initial_eval, _ = evaluate()
        ctx.logger.log(0, {"eval/accuracy": initial_eval})
    t_start, bar = time.time(), progress(cfg.max_steps, cfg.method)
    bar.update(ctx.start_step)
    for step in range(ctx.start_step, cfg.max_steps):
        t0 = time.time()
        # 1. rollout and 2. rewards (DAPO dynamic sampling keeps only groups whose rewards differ)
        model.eval()
        batch = next_prompts(cfg.prompts_per_step)
        rollout, rewards, per_fn, expanded, truncated_prompts, t_score = rollout_and_score(batch)
        zero_var_fraction = group_stats(rewards, rollout.group_index)[2]
        if cfg.dynamic_sampling:
            rollout, rewards, per_fn, expanded, t_extra = dynamic_sample(cfg, rollout, rewards, per_fn, expanded, next_prompts, rollout_and_score, tok.pad_token_id)
            t_score += t_extra
        t_generate = time.time() - t0 - t_score

        # 3. advantages: one scalar per completion, broadcast over its tokens
        advantages = advantage_fn(rewards, rollout.group_index, **advantage_options(cfg))
        completion_mask = rollout.completion_mask.clone()
        truncated = torch.tensor([r == "length" for r in rollout.finish_reason], device=device)
        if cfg.mask_truncated_completions:
            completion_mask[truncated] = 0
        input_ids, attention = sequence_inputs(rollout)
        C = rollout.completion_ids.shape[1]

        # Old-policy log-probs only when several updates reuse the batch; on-policy, old = current (detached).
        t_train = time.time()
        model.train()
        with torch.no_grad():
            old_logp = token_logprobs(model, input_ids, attention, C, cfg.temperature)[0] if cfg.num_iterations > 1 else None
            ref_logp = None
            if reference is not None:
                with reference.context():
                    ref_logp = token_logprobs(reference.model(), input_ids, attention, C, cfg.temperature)[0]

        # 4. loss and 5. optimizer step(s), accumulating over minibatches
        rows_total = input_ids.shape[0]
        mb = cfg.mini_batch_size or rows_total
        stats: dict[str, float] = {}
        for _ in range(cfg.num_iterations):
            for start in range(0, rows_total, mb):
                rows = slice(start, min(start + mb, rows_total))
                mask = completion_mask[rows]
                logp, entropy = token_logprobs(model, input_ids[rows], attention[rows], C, cfg.temperature)
                old = old_logp[rows] if old_logp is not None else logp.detach()
                per_token, loss_metrics = policy_loss_fn(logp, old, advantages[rows], mask, cfg.epsilon, cfg.epsilon_high or None)
                if ref_logp is not None:
                    kl = kl_estimate(logp, ref_logp[rows], cfg.kl_estimator)
                    if cfg.beta > 0:
                        per_token = per_token + cfg.beta * kl
                    loss_metrics["kl"] = float((kl.detach() * mask).sum() / mask.sum().clamp(min=1))
                loss = aggregate(per_token, mask, cfg.max_completion_length)
                weight = minibatch_weight(aggregation, completion_mask, rows, rows_total)
                (loss * weight).backward()
                loss_metrics["loss"] = loss.item()
                loss_metrics["entropy"] = float((entropy * mask).sum() / mask.sum().clamp(min=1))
                for key, value in loss_metrics.items():
                    stats[key] = stats.get(key, 0.0) + value * weight / cfg.num_iterations
            stats["grad_norm"] = grad_step(ctx, cfg.max_grad_norm)
        t_train = time.time() - t_train

        # metrics: what moves, so "loss is 0" never hides whether learning happens
        done = step + 1
        lengths = rollout.completion_lengths.float()
        generated = int(rollout.completion_mask.sum())
        metrics = {
            "reward": float(rewards.mean()),
            "reward_std": float(rewards.std()) if len(rewards) > 1 else 0.0,
            **summary_metrics(per_fn),
            **stats,
            "zero_variance_groups": zero_var_fraction,
            "completion_length": float(lengths.mean()),
            "completion_length_min": float(lengths.min()),
            "completion_length_max": float(lengths.max()),
            "truncation_rate": float(truncated.float().mean()),
            "truncated_prompts": truncated_prompts,
            "lr": ctx.scheduler.get_last_lr()[0],
            "tokens_generated": generated,
            "tokens_per_s": generated / max(1e-9, t_generate),
            "time/generate": t_generate,
            "time/score": t_score,
            "time/train": t_train,
            "time/step": time.time() - t0,
        }
        if cfg.eval_steps and done % cfg.eval_steps == 0 and done < cfg.max_steps:
            metrics["eval/accuracy"], _ = evaluate()
        ctx.logger.log(done, metrics)
        if cfg.logging_steps and done % cfg.logging_steps == 0:
            ctx.logger.log_samples(done, [
                {"prompt": expanded[i]["prompt"], "completion": rollout.completions_text[i], "reward": float(rewards[i])}
                for i in range(min(cfg.num_samples_logged, len(expanded)))
            ])
        bar.update(1)
        bar.set_postfix(reward=f"{metrics['reward']:.3f}", kl=f"{metrics.get('kl', 0.0):.4f}", clip=f"{metrics.get('clip_fraction', 0.0):.3f}")
        if cfg.save_steps and done % cfg.save_steps == 0 and done < cfg.max_steps:
            save_checkpoint(ctx.run_dir, done, model, tok, ctx.optimizer, ctx.scheduler, {"data_cursor": cursor}, cfg.save_total_limit)
    bar.close()
    train_time = time.time() - t_start

    model.eval()
    accuracy, rows = evaluate()
    summary = finish_run(ctx, cfg.max_steps, rows, {
        "method": cfg.method,
        "steps": cfg.max_steps,
        "eval_accuracy_before": initial_eval,
        "eval_accuracy": accuracy,
        "train_time_s": train_time,
        **({"env_eval": episodes.last_eval} if cfg.env else {}),
    })
    print(format_table([[cfg.method, initial_eval, accuracy, f"{train_time:.0f}s"]], ["method", "accuracy before", "after", "time"]))
    return summary


def dynamic_sample(cfg, rollout, rewards, per_fn, expanded, next_prompts, rollout_and_score, pad_id):
    """DAPO: keep groups whose rewards differ; sample fresh prompts until the batch is full again."""
    parts, t_score = [], 0.0
    current = (rollout, rewards, per_fn, expanded)
    for round_ in range(cfg.max_resample_rounds + 1):
        if round_ > 0:
            *current, t_extra = rollout_and_score(next_prompts(cfg.prompts_per_step))
            current, t_score = tuple(current[:4]), t_score + t_extra
        r, rw, pf, ex = current
        keep = nonzero_variance_groups(rw, r.group_index, cfg.prompts_per_step)[r.group_index]
        rows = keep.nonzero().flatten()
        if len(rows):
            parts.append((select_rows(r, rows), rw[rows], {k: v[rows.cpu()] for k, v in pf.items()}, [ex[i] for i in rows.tolist()]))
        if sum(len(p[0]) for p in parts) >= cfg.batch_size:
            break
    if not parts:  # nothing to learn from: keep the original batch (its advantages are all 0)
        return rollout, rewards, per_fn, expanded, t_score
    merged = concat_rollouts([p[0] for p in parts], pad_id)
    n = min(len(merged), cfg.batch_size)
    return (
        select_rows(merged, torch.arange(n)),
        torch.cat([p[1] for p in parts])[:n],
        {k: torch.cat([p[2][k] for p in parts])[:n] for k in per_fn},
        [e for p in parts for e in p[3]][:n],
        t_score,
    )
