"""Supervised fine-tuning: next-token loss on completion tokens only (the cold start before RL)."""

from __future__ import annotations

import time

import torch

from ..config import SFTConfig
from ..data import DataError
from ..data.collate import left_pad, right_pad
from ..models import token_logprobs
from ..models.loading import load_tokenizer
from ..monitor import progress
from .evaluate import evaluate_accuracy
from .inputs import encode_completion, encode_prompt, eval_records, train_records, verifier
from .lifecycle import finish_run, grad_step, managed_run, start_run


def encode_rows(records: list[dict], tok, max_length: int, source: str) -> list[tuple[list[int], list[int]]]:
    """Every row's (prompt ids, completion ids), once, before training: a row over max_length is an error
    naming its source and index, instead of a failure at whichever step first samples it."""
    encoded = []
    for index, record in enumerate(records):
        prompt, completion = encode_prompt(record["prompt"], tok)[0], encode_completion(record, tok)
        if len(prompt) + len(completion) > max_length:
            raise DataError(
                f"{source}, row {index}: prompt + completion is {len(prompt) + len(completion)} tokens, over "
                f"max_length={max_length}; raise max_length or shorten or drop the row"
            )
        encoded.append((prompt, completion))
    return encoded


@managed_run
def train_sft(cfg: SFTConfig) -> dict:
    n_records = cfg.num_train_samples or cfg.max_steps * cfg.batch_size
    records = train_records(cfg, n_records, required=("prompt", "completion"))  # checked before writing anything
    encoded = encode_rows(records, load_tokenizer(cfg.model), cfg.max_length, cfg.dataset or f"task {cfg.task}")
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
        batch = [encoded[i] for i in order[step * cfg.batch_size : (step + 1) * cfg.batch_size]]
        prompts, completions = [p for p, _ in batch], [c for _, c in batch]
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
        ctx.end_step(done, cfg)
    bar.close()
    train_time = time.time() - t_start

    accuracy, rows = evaluate_accuracy(model, tok, held_out, verify, cfg.max_new_tokens)
    summary = {"method": "sft", "steps": cfg.max_steps, "eval_accuracy": accuracy, "train_time_s": train_time}
    return finish_run(ctx, cfg.max_steps, rows, summary)
