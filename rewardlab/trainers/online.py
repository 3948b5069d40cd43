"""The online RL driver: rollout -> rewards -> advantages -> loss -> optimizer step.

GRPO, Dr. GRPO, DAPO, GSPO and RLOO are this one loop with different registry entries
(ADVANTAGES, POLICY_LOSSES, AGGREGATIONS) picked by the config. REINFORCE++ and PPO are the same loop
with a per-token estimator (advantage=reinforce_pp | gae): the KL penalty moves from the loss into the
reward, the score sits on the last token, and PPO adds a critic (trainers/critic.py) and its value loss.
"""

from __future__ import annotations

import difflib
import logging
import time
from contextlib import nullcontext

import torch

from ..algos import (
    ADVANTAGES,
    AGGREGATIONS,
    POLICY_LOSSES,
    AdaptiveKLController,
    FixedKLController,
    flowrl_loss,
    gae,
    group_stats,
    kl_estimate,
    nonzero_variance_groups,
    overlong_penalty,
    per_token_rewards,
    reinforce_pp,
    rlsd_advantages,
    value_loss,
    whiten,
)
from ..config import GRPOConfig
from ..data import columns
from ..models import is_peft, load_policy, token_logprobs
from ..monitor import HackingMonitor, format_table, progress, reward_length_correlation
from ..registry import UnknownNameError
from ..rewards import RewardFunctions, summary_metrics
from ..rollout import HFEngine, Rollout, SamplingParams, concat_rollouts, select_rows
from .critic import Critic, RewardModelScorer
from .env_rollouts import EnvRollouts, env_seed_records
from .evaluate import completions_for, evaluate_accuracy
from .flowrl import LogZ
from .inputs import (
    encode_prompt,
    eval_records,
    preflight_rewards,
    reward_functions,
    task_of,
    train_records,
    verifier,
)
from .self_distill import SELF_DISTILL_OBJECTIVES, SelfTeacher, self_distill_per_token
from .setup import finish_run, fit_prompt_length, grad_step, managed_run, start_run

# Per-token estimators (docs/algorithms.md#per-token-advantages); the others are outcome-level, in ADVANTAGES.
TOKEN_ADVANTAGES = ("gae", "reinforce_pp")

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


logger = logging.getLogger(__name__)


def warmup_advice(cfg: GRPOConfig) -> str | None:
    """A warning for several updates per rollout without a learning-rate warm-up (None when fine).

    Adam's first update moves every weight by about the full learning rate, whatever the gradient's size;
    PPO takes num_iterations x minibatches of them on its first rollout. On an earlier version of the
    arithmetic benchmark that collapsed one seed in three; on the current one no seed of five collapsed
    (BENCHMARKS.md), so this is a caution, not a measured fix."""
    if cfg.num_iterations > 1 and cfg.warmup_steps == 0:
        return (f"num_iterations={cfg.num_iterations} with warmup_steps=0: the first rollout's Adam updates each move "
                "every weight by about the full learning rate, which can wreck the starting policy. Consider "
                "warmup_steps=10.")
    return None


def minibatch_weight(loss_type: str, mask: torch.Tensor, rows: slice, total_rows: int) -> float:
    """Share of the full-batch loss a minibatch carries, so accumulated gradients equal the full batch's."""
    if loss_type == "token_mean":
        return float(mask[rows].sum() / mask.sum().clamp(min=1))
    return (rows.stop - rows.start) / total_rows


@managed_run
def train_grpo(cfg: GRPOConfig) -> dict:
    # Everything a user can get wrong is checked before the run directory or the model exist.
    if advice := warmup_advice(cfg):
        logger.warning(advice)
    aggregation = LOSS_TYPES.get(cfg.loss_type, cfg.loss_type)
    token_level = cfg.advantage in TOKEN_ADVANTAGES
    if not token_level and cfg.advantage not in ADVANTAGES:
        valid = sorted(ADVANTAGES.names() + list(TOKEN_ADVANTAGES))
        close = difflib.get_close_matches(cfg.advantage, valid, n=1)
        raise UnknownNameError(
            f"unknown advantage estimator {cfg.advantage!r}; valid: {', '.join(valid)}." + (f" Did you mean {close[0]!r}?" if close else "")
        )
    advantage_fn = None if token_level else ADVANTAGES[cfg.advantage]
    policy_loss_fn, aggregate = POLICY_LOSSES[cfg.policy_loss], AGGREGATIONS[aggregation]
    n_records = cfg.max_steps * cfg.prompts_per_step * (1 + cfg.max_resample_rounds * cfg.dynamic_sampling)
    if cfg.env:  # a text environment: each "prompt" is an episode seed, played num_generations times
        records = env_seed_records(cfg, n_records)
    else:
        # with a reward model, the task's own reward is not trained on: it is the gold the monitor watches
        rewards_fn = reward_functions(cfg) if cfg.reward_funcs or not cfg.reward_model else None
        gold_fn = RewardFunctions(task_of(cfg).reward_functions()) if cfg.reward_model and not cfg.dataset else None
        records = train_records(cfg, n_records)
        for fns in (rewards_fn, gold_fn):
            if fns is not None:
                preflight_rewards(fns, records)
        verify = verifier(cfg)
        held_out = eval_records(cfg)

    ctx = start_run(cfg)
    model, tok = ctx.model, ctx.tokenizer
    fit_prompt_length(cfg, model)
    device = next(model.parameters()).device
    reference = Reference(model, cfg) if (cfg.beta > 0 or cfg.log_kl or token_level or cfg.reward_model or cfg.objective == "flowrl") else None
    kl_ctl = AdaptiveKLController(cfg.beta, cfg.kl_target, cfg.kl_horizon) if cfg.kl_target else FixedKLController(cfg.beta)
    critic = Critic(cfg, device) if cfg.advantage == "gae" else None
    scorer = RewardModelScorer(cfg.reward_model, cfg, device) if cfg.reward_model else None
    monitor = HackingMonitor(cfg.hacking_patience, cfg.hacking_tolerance) if scorer is not None and not cfg.env else None
    log_z = LogZ(cfg, model, device) if cfg.objective == "flowrl" else None  # FlowRL's head, not exported
    teacher = SelfTeacher(cfg, model, tok) if cfg.objective in SELF_DISTILL_OBJECTIVES else None
    # everything besides the policy that a checkpoint carries (None: not used by this run)
    stateful = {"critic": critic, "kl_controller": kl_ctl, "hacking_monitor": monitor, "log_z": log_z, "self_teacher": teacher}
    extra_state = ctx.resumed_state.get("extra", {})
    for name, part in stateful.items():
        if part is not None and name in extra_state:
            part.load_state_dict(extra_state[name])
    engine = HFEngine(model, tok)
    sampling = SamplingParams(cfg.max_completion_length, cfg.temperature, cfg.top_p, cfg.top_k)
    # the policy's log-probs are recomputed under the distribution the engine sampled from (the reference's
    # are not filtered: a sampled token may lie outside its top-k)
    sampler_filter = {"top_k": cfg.top_k, "top_p": cfg.top_p}
    order = torch.randperm(len(records), generator=torch.Generator().manual_seed(cfg.seed)).tolist()
    cursor = extra_state.get("data_cursor", 0)

    def next_prompts(count: int) -> list[dict]:
        nonlocal cursor
        batch = [records[order[(cursor + i) % len(order)]] for i in range(count)]
        cursor += count
        return batch

    def evaluate():
        return evaluate_accuracy(model, tok, held_out, verify, cfg.max_completion_length)

    gold_seen: list[torch.Tensor] = []  # gold rewards of this step's samples (reward-model runs)
    gold_window: list[tuple[float, float, float]] = []  # (gold, proxy, sequence KL) per step since the last evaluation

    def rollout_and_score(batch: list[dict]):
        encoded = [encode_prompt(r["prompt"], tok, cfg.max_prompt_length) for r in batch]
        rollout = engine.generate([ids for ids, _ in encoded], cfg.num_generations, sampling)
        expanded = [r for r in batch for _ in range(cfg.num_generations)]
        t_score = time.time()
        reward_inputs = {
            "prompts": [r["prompt"] for r in expanded],
            "completions": completions_for(expanded, rollout.completions_text),
            "completion_ids": [ids[m.bool()].tolist() for ids, m in zip(rollout.completion_ids, rollout.completion_mask)],
            "columns": columns(expanded),
        }
        rewards, per_fn = rewards_fn(**reward_inputs) if rewards_fn is not None else (torch.zeros(len(expanded)), {})
        if scorer is not None:
            proxy = scorer(*(t.to(device) for t in sequence_inputs(rollout))).cpu()
            rewards, per_fn = rewards + proxy, {**per_fn, "reward_model": proxy}
        if gold_fn is not None:
            gold_seen.append(gold_fn(**reward_inputs)[0])
        if cfg.overlong_buffer:
            rewards = rewards + overlong_penalty(rollout.completion_lengths.cpu().float(), cfg.max_completion_length, cfg.overlong_buffer)
        if cfg.missing_eos_penalty:
            rewards = rewards - cfg.missing_eos_penalty * torch.tensor([r == "length" for r in rollout.finish_reason], dtype=rewards.dtype)
        return rollout, rewards.to(device), per_fn, expanded, sum(t for _, t in encoded), time.time() - t_score

    if cfg.env:  # the same loop on episodes: multi-turn rollouts and game evaluation (trainers/env_rollouts.py)
        episodes = EnvRollouts(cfg, model, tok, engine, sampling)
        rollout_and_score, evaluate = episodes.rollout_and_score, episodes.evaluate

    def env_metrics() -> dict[str, float]:
        """An environment's own metrics of the latest evaluation (eval/env/regret, ...); none for a task."""
        return {f"eval/env/{k}": v for k, v in episodes.last_eval.items()} if cfg.env else {}

    def eval_metrics() -> dict[str, float]:
        """The held-out score as eval/accuracy, plus the environment's own metrics."""
        score, _ = evaluate()
        return {"eval/accuracy": score, **env_metrics()}

    initial_eval = None
    if ctx.start_step == 0:
        initial = eval_metrics()
        initial_eval = initial["eval/accuracy"]
        ctx.logger.log(0, initial)
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
            old_logp = token_logprobs(model, input_ids, attention, C, cfg.temperature, **sampler_filter)[0] if cfg.num_iterations > 1 else None
            ref_logp = None
            if reference is not None:
                with reference.context():
                    ref_logp = token_logprobs(reference.model(), input_ids, attention, C, cfg.temperature)[0]
        # sdpo/rlsd/srpo: the policy (or its EMA) re-prompted with a sibling's solution or the answer scores the same tokens
        teacher_scores = teacher.score(model, rollout, expanded, rewards) if teacher is not None else None

        # 3. advantages. Outcome-level: one scalar per completion, broadcast over its tokens. Per-token
        # (gae, reinforce_pp): the KL penalty is part of the reward, the score sits on the last token.
        token_stats: dict[str, float] = {}
        if token_level:
            # the sampling policy's log-probs: the old-policy pass, else the engine's (equal to 1e-4, tested)
            sampled_logp = old_logp if old_logp is not None else rollout.sampled_logprobs.to(device)
            token_rewards, token_kl = per_token_rewards(rewards, sampled_logp, ref_logp, completion_mask, kl_ctl.value)
            sequence_kl = float(token_kl.sum(1).mean())
            kl_ctl.update(sequence_kl, input_ids.shape[0])
            token_stats = {"kl_penalty/sequence_kl": sequence_kl, "kl_penalty/beta": kl_ctl.value}
            if critic is not None:
                with torch.no_grad():
                    old_values = critic.values(input_ids, attention, C)
                advantages, returns = gae(token_rewards, old_values, completion_mask, cfg.gamma, cfg.lam)
                advantages = whiten(advantages, completion_mask)
                valid = completion_mask.bool()
                token_stats.update({"values/mean": float(old_values[valid].mean()), "values/returns_mean": float(returns[valid].mean())})
            else:
                advantages, returns = reinforce_pp(token_rewards, completion_mask, cfg.gamma)
        else:
            advantages = advantage_fn(rewards, rollout.group_index, **advantage_options(cfg))
        if cfg.objective == "rlsd":  # the verifier sets each sample's sign, the self-teacher each token's magnitude
            sampled_logp = old_logp if old_logp is not None else rollout.sampled_logprobs.to(device)
            advantages = rlsd_advantages(advantages, teacher_scores.logp, sampled_logp, completion_mask, cfg.rlsd_lambda, cfg.rlsd_eps)

        # 4. loss and 5. optimizer step(s), accumulating over minibatches
        rows_total = input_ids.shape[0]
        mb = cfg.mini_batch_size or rows_total
        stats: dict[str, float] = {}
        for _ in range(cfg.num_iterations):
            for start in range(0, rows_total, mb):
                rows = slice(start, min(start + mb, rows_total))
                mask = completion_mask[rows]
                logp, entropy = token_logprobs(model, input_ids[rows], attention[rows], C, cfg.temperature, **sampler_filter)
                old = old_logp[rows] if old_logp is not None else logp.detach()
                per_token, loss_metrics = policy_loss_fn(logp, old, advantages[rows], mask, cfg.epsilon, cfg.epsilon_high or None)
                if cfg.objective in ("sdpo", "srpo"):
                    per_token, sd_metrics = self_distill_per_token(
                        cfg.objective, per_token, logp, old, teacher_scores.rows(rows), rewards[rows] >= cfg.success_reward, mask, cfg.sdpo_mix
                    )
                    loss_metrics.update(sd_metrics)
                if ref_logp is not None:
                    kl = kl_estimate(logp, ref_logp[rows], cfg.kl_estimator)
                    if kl_ctl.value > 0 and not token_level:
                        per_token = per_token + kl_ctl.value * kl
                    loss_metrics["kl"] = float((kl.detach() * mask).sum() / mask.sum().clamp(min=1))
                loss = aggregate(per_token, mask, cfg.max_completion_length)
                if log_z is not None:  # FlowRL: the trajectory-balance loss replaces the surrogate (r_hat = the GRPO advantage)
                    z = log_z(model, rollout.prompt_ids[rows], rollout.prompt_mask[rows])
                    loss, flow_metrics = flowrl_loss(z, logp, ref_logp[rows], old, advantages[rows], mask, cfg.flowrl_beta,
                                                     cfg.flowrl_importance, cfg.flowrl_weight_clamp, cfg.epsilon, cfg.epsilon_high or None)
                    loss_metrics.update({f"flowrl/{k}": v for k, v in flow_metrics.items()})
                if critic is not None:
                    values = critic.values(input_ids[rows], attention[rows], C)
                    v_loss, v_metrics = value_loss(values, old_values[rows], returns[rows], mask, cfg.cliprange_value or None)
                    loss_metrics.update({"policy_loss": loss.item(), "value_loss": v_loss.item(), **v_metrics})
                    loss = loss + cfg.vf_coef * v_loss
                weight = minibatch_weight(aggregation if log_z is None else "seq_mean_token_mean", completion_mask, rows, rows_total)
                (loss * weight).backward()
                loss_metrics["loss"] = loss.item()
                loss_metrics["entropy"] = float((entropy * mask).sum() / mask.sum().clamp(min=1))
                for key, value in loss_metrics.items():
                    stats[key] = stats.get(key, 0.0) + value * weight / cfg.num_iterations
            stats["grad_norm"] = grad_step(ctx, cfg.max_grad_norm)
            if critic is not None:
                stats["value_grad_norm"] = critic.step()
            if log_z is not None:
                stats["log_z_grad_norm"] = log_z.step()
            if teacher is not None:
                teacher.update(model)
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
            **token_stats,
            "reward_length_corr": reward_length_correlation(rewards.tolist(), rollout.completion_lengths.tolist()),
            "zero_variance_groups": zero_var_fraction,
            # after dynamic sampling: the groups actually trained on (0 unless it gave up refilling)
            "zero_variance_groups_trained": group_stats(rewards, rollout.group_index)[2],
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
        if gold_seen:  # reward-model runs: the gold reward of the same samples, and the monitor's verdict
            # KL(policy || initial policy) per sequence: the k1 estimate summed over each sample's tokens
            sequence_kl = float(((rollout.sampled_logprobs.to(device) - ref_logp) * rollout.completion_mask).sum(1).mean())
            gold_window.append((float(torch.cat(gold_seen).nanmean()), float(per_fn["reward_model"].mean()), sequence_kl))
            metrics["gold_reward"] = gold_window[-1][0]
            gold_seen.clear()
        if cfg.eval_steps and done % cfg.eval_steps == 0 and done < cfg.max_steps:
            metrics.update(eval_metrics())
        # the monitor's first point is the starting policy (step 1's samples, KL 0), then every eval_steps
        if monitor is not None and gold_window and cfg.eval_steps and (done == 1 or done % cfg.eval_steps == 0):
            gold, proxy, kl = (sum(column) / len(gold_window) for column in zip(*gold_window))
            metrics.update(monitor.update(done, proxy, gold, kl))
            gold_window.clear()
        ctx.logger.log(done, metrics)
        if cfg.logging_steps and done % cfg.logging_steps == 0:
            ctx.logger.log_samples(done, [
                {"prompt": expanded[i]["prompt"], "completion": rollout.completions_text[i], "reward": float(rewards[i])}
                for i in range(min(cfg.num_samples_logged, len(expanded)))
            ])
        bar.update(1)
        bar.set_postfix(reward=f"{metrics['reward']:.3f}", kl=f"{metrics.get('kl', 0.0):.4f}", clip=f"{metrics.get('clip_fraction', 0.0):.3f}")
        ctx.end_step(done, cfg, lambda: {"data_cursor": cursor, **{n: part.state_dict() for n, part in stateful.items() if part is not None}})
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
    }, env_metrics())
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
