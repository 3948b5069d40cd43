"""The online RL driver, one step: rollout -> rewards (a ScoredBatch) -> advantages -> loss -> optimizer step.

GRPO, Dr. GRPO, DAPO, GSPO and RLOO are this one loop with different registry entries
(ADVANTAGES, POLICY_LOSSES, AGGREGATIONS) picked by the config. REINFORCE++ and PPO are the same loop
with a per-token estimator (advantage=reinforce_pp | gae): the KL penalty moves from the loss into the
reward, the score sits on the last token, and PPO adds a critic (trainers/critic.py) and its value loss.

Where each stage lives: batches.py (prompts, rollouts and rewards: ScoredBatch, TaskRollouts, dynamic
sampling; env_rollouts.py for text environments), policy_update.py (advantages, the loss of a minibatch,
the optimizer steps), setup.py (run directory, model, checkpoints).
"""

from __future__ import annotations

import logging
import os
import time
from functools import partial

import torch

from ..algos import group_stats
from ..config import ConfigError, GRPOConfig
from ..models.loading import load_tokenizer
from ..monitor import format_table, progress, reward_length_correlation
from ..rewards import RewardFunctions, summary_metrics
from ..rollout import ENGINES, SamplingParams
from . import gather
from .batches import PromptStream, ScoredBatch, TaskRollouts, dynamic_sample
from .env_rollouts import EnvRollouts, env_seed_records
from .inputs import (
    NO_EVAL_DATA,
    eval_records,
    eval_source,
    preflight_rewards,
    reward_functions,
    task_of,
    train_records,
    verifier,
)
from .lifecycle import finish_run, fit_prompt_length, grad_step, managed_run, start_run
from .policy_update import LoopParts, UpdateResult, loss_plan, update_policy

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


def check_processes(cfg: GRPOConfig, plan) -> None:
    """Under torchrun: what the loop does not yet run over several processes is refused before anything starts."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return
    unsupported = [name for name, used in (("a critic (advantage=gae)", plan.estimator.needs_values),
                                           (f"objective={cfg.objective}", cfg.objective != "policy_gradient"),
                                           ("dynamic_sampling", cfg.dynamic_sampling), ("env", bool(cfg.env))) if used]
    if unsupported:
        raise ConfigError(f"over {world} processes the online loop does not support yet: {', '.join(unsupported)}; "
                          "run it in one process")
    if cfg.prompts_per_step % world:
        raise ConfigError(f"{cfg.prompts_per_step} prompts per step (batch_size / num_generations) do not split over "
                          f"{world} processes; use a multiple of {world}")


@managed_run
def train_grpo(cfg: GRPOConfig) -> dict:
    # Everything a user can get wrong is checked before the run directory or the model exist.
    if advice := warmup_advice(cfg):
        logger.warning(advice)
    plan = loss_plan(cfg)
    n_records = cfg.max_steps * cfg.prompts_per_step * (1 + cfg.max_resample_rounds * cfg.dynamic_sampling)
    if cfg.env:  # a text environment: each "prompt" is an episode seed, played num_generations times
        records, rewards_fn, gold_fn, held_out, verify = env_seed_records(cfg, n_records), None, None, None, None
    else:
        # with a reward model, the task's own reward is not trained on: it is the gold the monitor watches
        rewards_fn = reward_functions(cfg) if cfg.reward_funcs or not cfg.reward_model else None
        gold_fn = RewardFunctions(task_of(cfg).reward_functions()) if cfg.reward_model and not cfg.dataset else None
        records = train_records(cfg, n_records)
        # held-out data: the user's eval_dataset, the task's split when the user gave no data, else none
        verify, held_out = verifier(cfg), (eval_records(cfg) if eval_source(cfg) else [])
        tokenizer = load_tokenizer(cfg.model)  # the pre-flight's completion_ids are the policy's tokens
        for fns, rows in ((rewards_fn, records), (gold_fn, records), (rewards_fn, held_out),
                          (verify and RewardFunctions([verify]), held_out)):  # evaluation calls these on held_out
            if fns is not None:
                preflight_rewards(fns, rows, tokenizer=tokenizer)

    check_processes(cfg, plan)
    ctx = start_run(cfg)
    model, tok = ctx.model, ctx.tokenizer
    fit_prompt_length(cfg, model)
    device = next(model.parameters()).device
    parts = LoopParts.build(cfg, plan, model, tok, device)
    saved = ctx.resumed_state.get("extra", {})
    parts.load_state(saved)
    engine = ENGINES[cfg.engine](model, tok, cfg)
    sampling = SamplingParams(cfg.max_completion_length, cfg.temperature, cfg.top_p, cfg.top_k)
    prompts = PromptStream(records, cfg.seed, saved.get("data_cursor", 0))
    if cfg.env:  # the same loop on episodes: multi-turn rollouts and game evaluation (trainers/env_rollouts.py)
        source = EnvRollouts(cfg, model, tok, engine, sampling)
    else:
        source = TaskRollouts(cfg, model, engine, sampling, tok, rewards_fn, parts.scorer, gold_fn, held_out, verify, device)
    gold_window: list[tuple[float, float, float]] = []  # (gold, proxy, sequence KL) per step since the last evaluation

    initial_eval, initial = None, {}
    if ctx.start_step == 0:
        initial = eval_metrics(source)
        initial_eval = initial.get("eval/accuracy")
        if initial:  # nothing when there is no held-out data
            ctx.logger.log(0, initial)
    t_start, bar = time.time(), progress(cfg.max_steps, cfg.method)
    bar.update(ctx.start_step)
    for step in range(ctx.start_step, cfg.max_steps):
        t0 = time.time()
        if rewards_fn is not None:  # TRL's trainer_state: optimizer steps done, passes over the prompts
            rewards_fn.at_step(step, epoch=prompts.cursor / max(1, len(prompts.records)))
        # 1. rollout and 2. rewards (DAPO dynamic sampling keeps only groups whose rewards differ)
        model.eval()
        records, first = gather.current().shard(prompts.next(cfg.prompts_per_step))  # over processes: a slice
        batch = source.rollout_and_score(records).from_prompt(first)
        zero_var_fraction = group_stats(*gather.current().rows(batch.rewards, batch.rollout.group_index))[2]
        if cfg.dynamic_sampling:
            batch = dynamic_sample(cfg, batch, source, prompts, tok.pad_token_id)
        t_generate = time.time() - t0 - batch.score_time
        # 3. advantages, 4. loss and 5. optimizer step(s)
        update = update_policy(cfg, ctx, plan, parts, batch, grad_step)
        engine.sync(model)

        done = step + 1
        metrics = step_metrics(cfg, ctx, batch, update, zero_var_fraction, t_generate, t0)
        if batch.gold:  # reward-model runs: the gold reward of the same samples, and the monitor's verdict
            # KL(policy || initial policy) per sequence: the k1 estimate summed over each sample's tokens
            rollout = batch.rollout
            sequence_kl = float(((rollout.sampled_logprobs.to(device) - update.ref_logp) * rollout.completion_mask).sum(1).mean())
            gold_window.append((float(torch.cat(batch.gold).nanmean()), float(batch.per_function["reward_model"].mean()), sequence_kl))
            metrics["gold_reward"] = gold_window[-1][0]
        if cfg.eval_steps and done % cfg.eval_steps == 0 and done < cfg.max_steps:
            if rewards_fn is not None:
                rewards_fn.at_step(done)  # evaluation's trainer_state: the steps done
            metrics.update(eval_metrics(source))
        # the monitor's first point is the starting policy (step 1's samples, KL 0), then every eval_steps
        if parts.monitor is not None and gold_window and cfg.eval_steps and (done == 1 or done % cfg.eval_steps == 0):
            gold, proxy, kl = (sum(column) / len(gold_window) for column in zip(*gold_window))
            metrics.update(parts.monitor.update(done, proxy, gold, kl))
            gold_window.clear()
        ctx.logger.log(done, metrics)
        if cfg.logging_steps and done % cfg.logging_steps == 0:
            ctx.logger.log_samples(done, [
                {"prompt": batch.records[i]["prompt"], "completion": batch.rollout.completions_text[i], "reward": float(batch.rewards[i]),
                 **{column: values[i] for column, values in batch.logs.extra.items()}}  # the rewards' log_extra columns
                for i in range(min(cfg.num_samples_logged, len(batch)))
            ])
        bar.update(1)
        bar.set_postfix(reward=f"{metrics['reward']:.3f}", kl=f"{metrics.get('kl', 0.0):.4f}", clip=f"{metrics.get('clip_fraction', 0.0):.3f}")
        ctx.end_step(done, cfg, partial(parts.state, prompts))
    bar.close()
    train_time = time.time() - t_start

    model.eval()
    if rewards_fn is not None:
        rewards_fn.at_step(cfg.max_steps)
    accuracy, rows = source.evaluate()
    final = eval_extra(source)
    evaluated = eval_summary(cfg, verify, initial, {**final, **({} if accuracy is None else {"eval/accuracy": accuracy})})
    summary = finish_run(ctx, cfg.max_steps, rows, {
        "method": cfg.method,
        "steps": cfg.max_steps,
        "eval_accuracy_before": initial_eval,
        "eval_accuracy": accuracy,
        **evaluated,
        "train_time_s": train_time,
        **({"env_eval": source.last_eval} if cfg.env else {}),
    }, final)
    if gather.current().is_main:  # over several processes: printed once
        print(format_table([[cfg.method, initial_eval, accuracy, f"{train_time:.0f}s"]], ["method", "accuracy before", "after", "time"]))
        print(eval_line(evaluated))
    return summary


def env_metrics(source) -> dict[str, float]:
    """An environment's own metrics of the latest evaluation (eval/env/regret, ...); none for a task."""
    return {f"eval/env/{k}": v for k, v in source.last_eval.items()}


def eval_extra(source) -> dict[str, float]:
    """The latest evaluation's metrics besides eval/accuracy: each reward function's held-out mean
    (eval/rewards/<name>/mean, a task) or the environment's own metrics (eval/env/...)."""
    return {**getattr(source, "last_rewards", {}), **env_metrics(source)}


def eval_metrics(source) -> dict[str, float]:
    """The held-out score as eval/accuracy (absent when no verifier says what correct means), each reward
    function's mean, and the environment's own metrics; {} when there is no held-out data."""
    score, _ = source.evaluate()
    return {**({} if score is None else {"eval/accuracy": score}), **eval_extra(source)}


def eval_summary(cfg: GRPOConfig, verify, before: dict[str, float], after: dict[str, float]) -> dict:
    """What the summary says about evaluation: the held-out data, what decided correct (the verifier's name),
    and each reward function's held-out mean before and after training."""
    from ..rewards.base import _function_name

    means = lambda metrics: {k[len("eval/rewards/"):-len("/mean")]: v for k, v in metrics.items()  # noqa: E731
                             if k.startswith("eval/rewards/") and k.endswith("/mean")}
    source = eval_source(cfg)
    return {
        "eval_data": source or NO_EVAL_DATA,
        "eval_verifier": "the environment's score" if cfg.env else (_function_name(verify) if verify is not None and source else None),
        "eval_rewards_before": means(before),
        "eval_rewards": means(after),
    }


def eval_line(evaluated: dict) -> str:
    """One line under the results table: which data, what counted as correct, the reward means."""
    verifier_text = f"accuracy by {evaluated['eval_verifier']}" if evaluated["eval_verifier"] else "no verifier: no accuracy"
    rewards = ", ".join(f"{name} {evaluated['eval_rewards_before'].get(name, float('nan')):.3f} -> {value:.3f}"
                        for name, value in evaluated["eval_rewards"].items())
    return f"held-out: {evaluated['eval_data']}; {verifier_text}" + (f"; reward means {rewards}" if rewards else "")


def step_metrics(cfg: GRPOConfig, ctx, batch: ScoredBatch, update: UpdateResult, zero_var_fraction: float,
                 t_generate: float, t0: float) -> dict[str, float]:
    """What moves, so "loss is 0" never hides whether learning happens."""
    rollout = batch.rollout
    rewards, group_index, lengths = gather.current().rows(batch.rewards, rollout.group_index,
                                                          rollout.completion_lengths.float().to(batch.rewards.device))
    generated = int(rollout.completion_mask.sum())
    metrics = {
        "reward": float(rewards.mean()),
        "reward_std": float(rewards.std()) if len(rewards) > 1 else 0.0,
        **summary_metrics(batch.per_function),
        **update.stats,
        **update.token_stats,
        "reward_length_corr": reward_length_correlation(rewards.tolist(), lengths.tolist()),
        "zero_variance_groups": zero_var_fraction,
        # after dynamic sampling: the groups actually trained on (0 unless it gave up refilling)
        "zero_variance_groups_trained": group_stats(rewards, group_index)[2],
        "completion_length": float(lengths.mean()),
        "completion_length_min": float(lengths.min()),
        "completion_length_max": float(lengths.max()),
        "truncation_rate": float(update.truncated.float().mean()),
        "truncated_prompts": batch.truncated_prompts,
        "lr": ctx.scheduler.get_last_lr()[0],
        "tokens_generated": generated,
        "tokens_per_s": generated / max(1e-9, t_generate),
        "time/generate": t_generate,
        "time/score": batch.score_time,
        "time/train": update.seconds,
        "time/step": time.time() - t0,
    }
    # the reward functions' log_metric values, averaged over the step (a name taken by a metric above gets a prefix)
    logged = {(f"log_metric/{name}" if name in metrics else name): value for name, value in batch.logs.metric_means().items()}
    return {**metrics, **logged}
