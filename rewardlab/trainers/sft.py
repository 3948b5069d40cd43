"""Supervised fine-tuning: next-token loss on completion tokens only (the cold start before RL)."""

from __future__ import annotations

import time

import torch

from ..config import SFTConfig
from ..models import token_logprobs
from ..monitor import progress
from ..rollout import left_pad
from .checkpoint import save_checkpoint
from .evaluate import evaluate_accuracy
from .inputs import encode_completion, encode_prompt, eval_records, train_records, verifier
from .setup import finish_run, grad_step, start_run


def right_pad(sequences: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
        mask[row, : len(seq)] = 1
    return ids, mask


def train_sft(cfg: SFTConfig) -> dict:
    n_records = cfg.num_train_samples or cfg.max_steps * cfg.batch_size
    records = train_records(cfg, n_records, required=("prompt", "completion"))  # checked before writing anything
    ctx = start_run(cfg)
    model, tok = ctx.model, ctx.tokenizer
    device = next(model.parameters()).device
    # A seeded permutation per epoch: the data position is a pure function of the step, so resume is exact.
    order_gen = torch.Generator().manual_seed(cfg.seed)
    epochs = -(-cfg.max_steps * cfg.batch_size // len(records))
    order = torch.cat([torch.randperm(len(records), generator=order_gen) for _ in range(epochs)]).tolist()
    held_out = eval_records(cfg)
    verify = verifier(cfg)

    t_start, bar = time.time(), progress(cfg.max_steps, "sft")
    bar.update(ctx.start_step)
    for step in range(ctx.start_step, cfg.max_steps):
        batch = [records[i] for i in order[step * cfg.batch_size : (step + 1) * cfg.batch_size]]
        prompts = [encode_prompt(r["prompt"], tok)[0] for r in batch]
        completions = [encode_completion(r, tok) for r in batch]
        too_long = [i for i, (p, c) in enumerate(zip(prompts, completions)) if len(p) + len(c) > cfg.max_length]
        if too_long:
            raise ValueError(f"a training row is longer than max_length={cfg.max_length} tokens; raise max_length")
        prompt_ids, prompt_mask = left_pad(prompts, tok.pad_token_id)
        completion_ids, completion_mask = right_pad(completions, tok.pad_token_id)
        input_ids = torch.cat([prompt_ids, completion_ids], 1).to(device)
        attention = torch.cat([prompt_mask, completion_mask], 1).to(device)
        completion_mask = completion_mask.to(device)

        logp, _ = token_logprobs(model, input_ids, attention, completion_ids.shape[1])
        loss = -(logp * completion_mask).sum() / completion_mask.sum()
        loss.backward()
        metrics = {"loss": loss.item(), "grad_norm": grad_step(ctx, cfg.max_grad_norm), "lr": ctx.scheduler.get_last_lr()[0]}
        done = step + 1
        if cfg.eval_steps and done % cfg.eval_steps == 0 and done < cfg.max_steps:
            metrics["eval/accuracy"], _ = evaluate_accuracy(model, tok, held_out, verify, cfg.max_new_tokens)
        ctx.logger.log(done, metrics)
        bar.update(1)
        bar.set_postfix(loss=f"{metrics['loss']:.3f}")
        if cfg.save_steps and done % cfg.save_steps == 0 and done < cfg.max_steps:
            save_checkpoint(ctx.run_dir, done, model, tok, ctx.optimizer, ctx.scheduler, {}, cfg.save_total_limit)
    bar.close()
    train_time = time.time() - t_start

    accuracy, rows = evaluate_accuracy(model, tok, held_out, verify, cfg.max_new_tokens)
    summary = {"method": "sft", "steps": cfg.max_steps, "eval_accuracy": accuracy, "train_time_s": train_time}
    return finish_run(ctx, cfg.max_steps, rows, summary)
