"""Reward model: Bradley-Terry loss on preference pairs (docs/algorithms.md#reward-model).

pairs -> one forward over chosen and rejected rows -> scores at the last real token -> BT loss -> step.
With a gold scorer (task: preference), held-out accuracy is measured against the noisy labels the model
learned from and against the noiseless gold order they were drawn from.
"""

from __future__ import annotations

import time

import torch

from ..algos import bradley_terry_loss
from ..config import RewardModelConfig
from ..models import reward_scores
from ..monitor import format_table, progress
from .inputs import eval_split, task_of
from .lifecycle import finish_run, grad_step, managed_run, start_run
from .preference_inputs import EncodedRows, encode_records, pair_batch, preference_records, split_conversation


@torch.no_grad()
def score_pairs(model, encoded: EncodedRows, pad_id: int, batch_size: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """(chosen scores [N], rejected scores [N]) of every pair, without gradients."""
    device = next(model.parameters()).device
    chosen, rejected = [], []
    for start in range(0, len(encoded.prompts), batch_size):
        rows = list(range(start, min(start + batch_size, len(encoded.prompts))))
        scores = reward_scores(model, *pair_batch(encoded, rows, pad_id, device)[:2])
        chosen.append(scores[: len(rows)].cpu())
        rejected.append(scores[len(rows) :].cpu())
    return torch.cat(chosen), torch.cat(rejected)


def evaluate_reward_model(model, tokenizer, cfg: RewardModelConfig, records: list[dict], encoded: EncodedRows) -> tuple[dict, list[dict]]:
    """Held-out accuracy against the labels, and against the gold order when the task has a gold scorer."""
    was_training = model.training
    model.eval()
    chosen, rejected = score_pairs(model, encoded, tokenizer.pad_token_id)
    model.train(was_training)
    correct = (chosen > rejected).tolist()
    metrics = {"eval_accuracy": sum(correct) / len(correct), "eval_margin": float((chosen - rejected).mean())}
    rows = [
        {"prompt": r["prompt"], "chosen": r["chosen"], "rejected": r["rejected"], "chosen_score": float(c),
         "rejected_score": float(j), "correct": ok}
        for r, c, j, ok in zip(records, chosen, rejected, correct)
    ]
    task = None if cfg.eval_dataset else task_of(cfg)
    if task is not None and hasattr(task, "gold"):
        gold_pairs = []
        for row in rows:
            prompt, chosen_text, rejected_text = split_conversation(row)
            gold_chosen, gold_rejected = task.gold(prompt, chosen_text), task.gold(prompt, rejected_text)
            row["gold_chosen"], row["gold_rejected"] = gold_chosen, gold_rejected
            gold_pairs.append(gold_chosen > gold_rejected)
        agrees = [(c > j) == g for c, j, g in zip(chosen.tolist(), rejected.tolist(), gold_pairs)]
        metrics["eval_gold_accuracy"] = sum(agrees) / len(agrees)
        metrics["eval_label_gold_agreement"] = sum(gold_pairs) / len(gold_pairs)
        metrics["eval_expected_label_accuracy"] = task.expected_label_accuracy(records)
    return metrics, rows


@managed_run
def train_reward_model(cfg: RewardModelConfig) -> dict:
    n_records = cfg.num_train_samples or cfg.max_steps * cfg.batch_size
    records = preference_records(cfg, n_records)  # checked before writing anything
    held_out = preference_records(cfg, cfg.eval_n, split=eval_split(cfg))

    ctx = start_run(cfg, reward_model=True)
    model, tok = ctx.model, ctx.tokenizer
    device = next(model.parameters()).device
    encoded = encode_records(records, tok, cfg.max_length, cfg.max_prompt_length, source=cfg.dataset or "training pairs")
    encoded_eval = encode_records(held_out, tok, cfg.max_length, cfg.max_prompt_length, source=cfg.eval_dataset or "held-out pairs")
    order_gen = torch.Generator().manual_seed(cfg.seed)
    epochs = -(-cfg.max_steps * cfg.batch_size // len(records))
    order = torch.cat([torch.randperm(len(records), generator=order_gen) for _ in range(epochs)]).tolist()

    before = None
    if ctx.start_step == 0:
        before, _ = evaluate_reward_model(model, tok, cfg, held_out, encoded_eval)
        ctx.logger.log(0, {"eval/accuracy": before["eval_accuracy"]})
    t_start, bar = time.time(), progress(cfg.max_steps, cfg.method)
    bar.update(ctx.start_step)
    model.train()
    for step in range(ctx.start_step, cfg.max_steps):
        rows = order[step * cfg.batch_size : (step + 1) * cfg.batch_size]
        input_ids, attention, _ = pair_batch(encoded, rows, tok.pad_token_id, device)
        scores = reward_scores(model, input_ids, attention)
        chosen, rejected = scores[: len(rows)], scores[len(rows) :]
        margin = torch.tensor([encoded.margins[i] for i in rows], device=device) if encoded.margins else None
        loss, accuracy = bradley_terry_loss(chosen, rejected, margin, cfg.center_rewards_coefficient)
        loss.backward()
        metrics = {
            "loss": loss.item(),
            "accuracy": accuracy.item(),
            "margin": float((chosen - rejected).detach().mean()),
            "rewards/chosen": float(chosen.detach().mean()),
            "rewards/rejected": float(rejected.detach().mean()),
            "grad_norm": grad_step(ctx, cfg.max_grad_norm),
            "lr": ctx.scheduler.get_last_lr()[0],
        }
        done = step + 1
        if cfg.eval_steps and done % cfg.eval_steps == 0 and done < cfg.max_steps:
            evaluated, _ = evaluate_reward_model(model, tok, cfg, held_out, encoded_eval)
            metrics.update({f"eval/{k.removeprefix('eval_')}": v for k, v in evaluated.items()})
        ctx.logger.log(done, metrics)
        bar.update(1)
        bar.set_postfix(loss=f"{metrics['loss']:.3f}", acc=f"{metrics['accuracy']:.2f}")
        ctx.end_step(done, cfg)
    bar.close()
    train_time = time.time() - t_start

    after, rows = evaluate_reward_model(model, tok, cfg, held_out, encoded_eval)
    summary = {"method": cfg.method, "steps": cfg.max_steps, "eval_n": len(held_out),
               "eval_accuracy_before": before["eval_accuracy"] if before else None, **after,
               "train_time_s": train_time, "truncated_rows": encoded.truncated}
    table = [["labels (noisy)", before["eval_accuracy"] if before else None, after["eval_accuracy"]]]
    if "eval_gold_accuracy" in after:
        table.append(["gold order", before.get("eval_gold_accuracy") if before else None, after["eval_gold_accuracy"]])
        table.append(["ceiling vs labels", after["eval_label_gold_agreement"], after["eval_label_gold_agreement"]])
    summary = finish_run(ctx, cfg.max_steps, rows, summary)
    print(format_table(table, [f"held-out pair accuracy ({len(held_out)} pairs)", "before", "after"]))
    return summary

