"""Rejection-sampling fine-tuning (RAFT) and what it shares with best-of-n: sample n, rank, keep the best.

    train_rs(cfg)   rounds of: sample num_generations completions per prompt from the current policy -> rank
                    them by the reward functions (or a reward model) -> keep the top keep_top_k with at least
                    min_reward (prompts with none are dropped) -> SFT on the kept completions
    keep_best(rewards, texts, k, min_reward) -> indices     the selection rule, alone (docs/algorithms.md#rejection-sampling-and-best-of-n)
    sample_scored(...) -> Samples                             n completions per record, their rewards and verdicts
    verified_pairs(samples, records) -> [{prompt, chosen, rejected}]   preference pairs from judged samples

Each round's kept set is written to rounds/round-<r>.jsonl in the run directory before its first step, with the
token ids trained on, so a resumed run trains on exactly the set the interrupted one drew.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass

import torch

from ..config import RejectionSamplingConfig
from ..monitor import format_table, progress
from ..rewards.calling import reward_kwargs
from ..rewards.reward_model import RewardModelScorer
from ..rollout import HFEngine, SamplingParams
from .evaluate import evaluate_accuracy, judge
from .inputs import (
    NO_EVAL_DATA,
    encode_prompt,
    eval_records,
    eval_source,
    reward_functions,
    train_records,
    verifier,
)
from .lifecycle import finish_run, grad_step, managed_run, start_run
from .sft import batch_loss

log = logging.getLogger(__name__)


def keep_best(rewards: list[float], texts: list[str], k: int, min_reward: float) -> list[int]:
    """Indices of the k completions to keep: highest reward first (ties in sampling order), each text once, none
    below min_reward (nor NaN). An empty list drops the prompt."""
    order = sorted((i for i, r in enumerate(rewards) if not math.isnan(r) and r >= min_reward), key=lambda i: -rewards[i])
    kept, seen = [], set()
    for i in order:
        if texts[i] not in seen:
            seen.add(texts[i])
            kept.append(i)
        if len(kept) == k:
            break
    return kept


@dataclass
class Samples:
    """n completions for each of P records, flattened prompt-major (row p * n + j is record p's j-th sample)."""

    n: int
    prompt_ids: list[list[int]]  # [P]
    completion_ids: list[list[int]]  # [P * n], the tokens the policy wrote (EOS included)
    texts: list[str]  # [P * n]
    rewards: torch.Tensor  # [P * n] the ranking reward (NaN where no reward function applied)
    correct: list[bool] | None  # [P * n] by the verifier (None without one)

    def group(self, p: int) -> range:
        return range(p * self.n, (p + 1) * self.n)


@torch.no_grad()
def sample_scored(model, tokenizer, records: list[dict], n: int, params: SamplingParams, rewards_fn=None,
                  scorer=None, verify=None) -> Samples:
    """Sample n completions per record and score them: the reward functions' weighted total plus the reward
    model's score (either may be absent), and the verifier's verdict when there is one."""
    was_training = model.training
    model.eval()
    prompts = [encode_prompt(r["prompt"], tokenizer)[0] for r in records]
    rollout = HFEngine(model, tokenizer).generate(prompts, n, params)
    model.train(was_training)
    expanded = [r for r in records for _ in range(n)]
    ids = [row[mask.bool()].tolist() for row, mask in zip(rollout.completion_ids, rollout.completion_mask)]
    texts = rollout.completions_text
    total = torch.zeros(len(ids))
    if rewards_fn is not None:
        total = rewards_fn(**reward_kwargs(expanded, texts, ids))[0].float().cpu()
    if scorer is not None:
        device = next(scorer.model.parameters()).device
        total = total + scorer(*(t.to(device) for t in rollout.sequence_inputs())).float().cpu()
    correct = judge(expanded, texts, ids, verify).correct if verify is not None else None
    return Samples(n, prompts, ids, texts, total, correct)


def kept_rows(samples: Samples, records: list[dict], k: int, min_reward: float) -> list[dict]:
    """The kept completions of every prompt, as the rows a round trains on (written to its jsonl file)."""
    rows = []
    for p, record in enumerate(records):
        group = list(samples.group(p))
        for j in keep_best([float(samples.rewards[i]) for i in group], [samples.texts[i] for i in group], k, min_reward):
            i = group[j]
            rows.append({"index": p, "prompt": record["prompt"], "completion": samples.texts[i], "reward": float(samples.rewards[i]),
                         "prompt_ids": samples.prompt_ids[p], "completion_ids": samples.completion_ids[i]})
    return rows


def verified_pairs(samples: Samples, records: list[dict], per_prompt: int = 1) -> list[dict]:
    """Preference pairs from a policy's own samples judged by a verifier: per prompt up to per_prompt pairs of
    (a distinct correct completion, a distinct wrong one), in sampling order; prompts whose samples are all
    right or all wrong give none, and an empty completion (EOS at once) is never paired: a preference row
    needs text on both sides. Rows in TRL's preference format {"prompt", "chosen", "rejected", "answer"}."""
    if samples.correct is None:
        raise ValueError("verified_pairs needs samples judged by a verifier (sample_scored(..., verify=...))")
    pairs = []
    for p, record in enumerate(records):
        right = list(dict.fromkeys(samples.texts[i] for i in samples.group(p) if samples.correct[i] and samples.texts[i]))
        wrong = list(dict.fromkeys(samples.texts[i] for i in samples.group(p) if not samples.correct[i] and samples.texts[i]))
        for chosen, rejected in list(zip(right, wrong))[:per_prompt]:
            pairs.append({"prompt": record["prompt"], "chosen": chosen, "rejected": rejected, "answer": record.get("answer")})
    return pairs


def round_stats(samples: Samples, rows: list[dict], n_prompts: int) -> dict[str, float]:
    rewards = samples.rewards[~samples.rewards.isnan()]
    stats = {"rs/reward_mean": float(rewards.mean()) if len(rewards) else float("nan"), "rs/kept": float(len(rows)),
             "rs/prompts_kept": len({r["index"] for r in rows}) / max(1, n_prompts)}
    if samples.correct is not None:
        stats["rs/sample_accuracy"] = sum(samples.correct) / max(1, len(samples.correct))
        stats["rs/pass_at_n"] = sum(any(samples.correct[i] for i in samples.group(p)) for p in range(n_prompts)) / max(1, n_prompts)
    return stats


def round_file(run_dir, r: int):
    return run_dir / "rounds" / f"round-{r}.jsonl"


def read_round(path) -> list[dict]:
    with open(path) as fh:
        return [json.loads(line) for line in fh if line.strip()]


def write_round(path, rows: list[dict]) -> None:
    """Written whole or not at all (a crash mid-write leaves no half file to resume from)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    with open(partial, "w") as fh:
        for row in rows:
            fh.write(json.dumps(row) + "\n")
    partial.replace(path)


@managed_run
def train_rs(cfg: RejectionSamplingConfig) -> dict:
    records = train_records(cfg, cfg.num_rounds * cfg.prompts_per_round)
    held_out = eval_records(cfg) if eval_source(cfg) else []
    verify = verifier(cfg)
    rewards_fn = reward_functions(cfg) if cfg.reward_funcs or not cfg.reward_model else None
    ctx = start_run(cfg)
    model, tok = ctx.model, ctx.tokenizer
    device = next(model.parameters()).device
    scorer = RewardModelScorer(cfg.reward_model, cfg, device) if cfg.reward_model else None
    params = SamplingParams(cfg.max_new_tokens, cfg.temperature)

    initial_eval = None
    if ctx.start_step == 0:
        initial_eval, _ = evaluate_accuracy(model, tok, held_out, verify, cfg.max_new_tokens)
        ctx.logger.log(0, {"eval/accuracy": initial_eval})
    t_start, bar = time.time(), progress(cfg.max_steps, "rs")
    bar.update(ctx.start_step)
    table = []
    for r in range(cfg.num_rounds):
        steps = cfg.round_steps(r)
        if steps.stop <= ctx.start_step:
            continue
        path = round_file(ctx.run_dir, r)
        stats: dict[str, float] = {}
        if path.is_file():  # a resumed round: the set the interrupted run drew
            rows = read_round(path)
        else:
            start = (r * cfg.prompts_per_round) % len(records)
            batch = [records[(start + i) % len(records)] for i in range(cfg.prompts_per_round)]
            t0 = time.time()
            samples = sample_scored(model, tok, batch, cfg.num_generations, params, rewards_fn, scorer, verify)
            rows = kept_rows(samples, batch, cfg.keep_top_k, cfg.min_reward)
            write_round(path, rows)
            stats = {**round_stats(samples, rows, len(batch)), "time/sample": time.time() - t0}
            table.append([r, len(rows), stats["rs/prompts_kept"], stats.get("rs/sample_accuracy"), stats["rs/reward_mean"]])
        if not rows:
            log.warning("round %d kept no completion (none reached min_reward=%g); its %d steps are skipped", r,
                        cfg.min_reward, len(steps))
        order = torch.randperm(len(rows), generator=torch.Generator().manual_seed(cfg.seed * 1000 + r)).tolist() if rows else []
        encoded = [(row["prompt_ids"], row["completion_ids"], None) for row in rows]
        for step in range(max(steps.start, ctx.start_step), steps.stop):
            metrics = dict(stats) if step == steps.start else {}
            if rows:
                i = (step - steps.start) * cfg.batch_size
                batch_rows = [encoded[order[(i + j) % len(order)]] for j in range(min(cfg.batch_size, len(order)))]
                loss, _ = batch_loss(model, batch_rows, tok.pad_token_id, device)
                loss.backward()
                metrics.update({"loss": loss.item(), "grad_norm": grad_step(ctx, cfg.max_grad_norm)})
            metrics.update({"lr": ctx.scheduler.get_last_lr()[0], "rs/round": float(r)})
            done = step + 1
            if cfg.eval_steps and done % cfg.eval_steps == 0 and done < cfg.max_steps:
                metrics["eval/accuracy"], _ = evaluate_accuracy(model, tok, held_out, verify, cfg.max_new_tokens)
            ctx.logger.log(done, metrics)
            bar.update(1)
            if "loss" in metrics:
                bar.set_postfix(loss=f"{metrics['loss']:.3f}", round=r)
            ctx.end_step(done, cfg)
    bar.close()
    train_time = time.time() - t_start

    model.eval()
    accuracy, rows = evaluate_accuracy(model, tok, held_out, verify, cfg.max_new_tokens)
    if table:
        print(format_table(table, ["round", "kept", "prompts kept", "sample accuracy", "reward mean"]))
    return finish_run(ctx, cfg.max_steps, rows, {
        "method": "rs", "steps": cfg.max_steps, "rounds": cfg.num_rounds, "eval_accuracy_before": initial_eval,
        "eval_accuracy": accuracy, "eval_data": eval_source(cfg) or NO_EVAL_DATA, "train_time_s": train_time,
        "samples_drawn": cfg.num_rounds * cfg.prompts_per_round * cfg.num_generations,
    })
