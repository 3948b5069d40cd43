"""The DPO family: DPO, IPO, cDPO, hinge, APO and SimPO on preference pairs (alone or as a weighted sum,
with RPO's NLL term on the chosen replies), KTO on labelled single completions
(docs/algorithms.md#preference-losses).

pairs -> policy log-probs of chosen and rejected (one forward) -> reference log-probs (on the fly, or
precomputed once) -> preference loss -> optimizer step. Metrics carry TRL's names: rewards/chosen,
rewards/rejected, rewards/accuracies, rewards/margins, logps/chosen, logps/rejected, loss.
With a gold scorer (task: preference), the policy's samples on held-out prompts are scored before and
after training, and the win rate against the starting model is reported.
"""

from __future__ import annotations

import time

import torch

from ..algos import kto_loss, kto_reference_point, preference_loss
from ..config import DPOConfig
from ..data.collate import collate
from ..models import token_logprobs
from ..monitor import format_table, progress
from .gold import gold_report, gold_samples
from .inputs import eval_split, task_of
from .lifecycle import finish_run, grad_step, managed_run, start_run
from .preference_inputs import EncodedRows, encode_records, pair_batch, preference_records
from .reference import Reference


def sequence_logps(model, input_ids: torch.Tensor, attention: torch.Tensor, completion_mask: torch.Tensor) -> torch.Tensor:
    """Summed log-probs of each row's completion tokens [N]."""
    logp, _ = token_logprobs(model, input_ids, attention, completion_mask.shape[1])
    return (logp * completion_mask).sum(-1)


class FrozenReference(Reference):
    """The reference policy (trainers/reference.py) with the sequence log-probs the preference losses use."""

    @torch.no_grad()
    def logps(self, input_ids: torch.Tensor, attention: torch.Tensor, completion_mask: torch.Tensor) -> torch.Tensor:
        with self.context():
            return sequence_logps(self.model(), input_ids, attention, completion_mask)


def kl_rows(encoded: EncodedRows, rows: list[int]) -> list[list[int]]:
    """KTO's mismatched completions: row i is paired with the completion of row i + 1 (a fixed pairing,
    so precomputed and on-the-fly reference log-probs agree)."""
    n = len(encoded.prompts)
    return [encoded.completions[0][(i + 1) % n] for i in rows]


def batch_tensors(encoded: EncodedRows, rows: list[int], pad_id: int, device, kto: bool) -> tuple:
    """Paired: (chosen rows + rejected rows). KTO: (the rows' completions + their mismatched completions)."""
    if not kto:
        return pair_batch(encoded, rows, pad_id, device)
    prompts = [encoded.prompts[i] for i in rows]
    completions = [encoded.completions[0][i] for i in rows] + kl_rows(encoded, rows)
    return tuple(t.to(device) for t in collate(prompts + prompts, completions, pad_id))


@torch.no_grad()
def precompute_reference(reference: FrozenReference, encoded: EncodedRows, pad_id: int, kto: bool, batch_size: int = 256) -> torch.Tensor:
    """Reference log-probs of every row [N, 2] (paired: chosen, rejected; KTO: completion, mismatched)."""
    device = next((reference.copy or reference.policy).parameters()).device
    out = []
    for start in range(0, len(encoded.prompts), batch_size):
        rows = list(range(start, min(start + batch_size, len(encoded.prompts))))
        logps = reference.logps(*batch_tensors(encoded, rows, pad_id, device, kto))
        out.append(torch.stack([logps[: len(rows)], logps[len(rows) :]], 1).cpu())
    return torch.cat(out)


def step_loss(cfg: DPOConfig, model, encoded: EncodedRows, rows: list[int], pad_id: int, ref_logps) -> tuple[torch.Tensor, dict]:
    """The loss of one batch and its metrics. ref_logps: a FrozenReference, a precomputed [N, 2] tensor, or
    None (SimPO)."""
    device = next(model.parameters()).device
    kto, n = cfg.loss_type == "kto", len(rows)
    input_ids, attention, completion_mask = batch_tensors(encoded, rows, pad_id, device, kto)
    if ref_logps is None:
        ref = None
    elif isinstance(ref_logps, FrozenReference):
        ref = ref_logps.logps(input_ids, attention, completion_mask)
    else:
        ref = ref_logps[rows].to(device).T.reshape(-1)
    if kto:
        # only the real completions need gradients; the mismatched ones only estimate the KL baseline z0
        logps = sequence_logps(model, input_ids[:n], attention[:n], completion_mask[:n])
        with torch.no_grad():
            kl_logps = sequence_logps(model, input_ids[n:], attention[n:], completion_mask[n:])
        z0 = kto_reference_point(kl_logps, ref[n:])
        labels = torch.tensor([encoded.labels[i] for i in rows], device=device)
        losses, rewards = kto_loss(logps, ref[:n], labels, z0, cfg.beta, cfg.desirable_weight, cfg.undesirable_weight)
        mean = lambda x, m: float(x[m].mean()) if m.any() else float("nan")  # noqa: E731
        metrics = {"kl": float(z0), "rewards/chosen": mean(rewards, labels), "rewards/rejected": mean(rewards, ~labels),
                   "logps/chosen": mean(logps.detach(), labels), "logps/rejected": mean(logps.detach(), ~labels)}
        metrics["rewards/margins"] = metrics["rewards/chosen"] - metrics["rewards/rejected"]
        return losses.mean(), metrics
    logps = sequence_logps(model, input_ids, attention, completion_mask)
    chosen, rejected = logps[:n], logps[n:]
    lengths, types, opts = completion_mask.sum(-1), cfg.loss_types, {}
    if "simpo" in types:
        opts = {"chosen_lengths": lengths[:n], "rejected_lengths": lengths[n:], "gamma": cfg.simpo_gamma}
    if "sft" in types or cfg.rpo_alpha:  # the chosen replies' NLL (a token mean over the batch)
        opts["chosen_lengths"] = lengths[:n]
    if cfg.loss_weights:
        opts["loss_weights"] = cfg.loss_weights
    if cfg.rpo_alpha:
        opts["rpo_alpha"] = cfg.rpo_alpha
    ref_chosen, ref_rejected = (None, None) if ref is None else (ref[:n], ref[n:])
    losses, chosen_rewards, rejected_rewards = preference_loss(
        chosen, rejected, ref_chosen, ref_rejected, cfg.beta, cfg.loss_type, cfg.label_smoothing, **opts
    )
    nll = {"nll_loss": float(-chosen.detach().sum() / lengths[:n].sum())} if "chosen_lengths" in opts else {}
    metrics = {
        "rewards/chosen": float(chosen_rewards.mean()),
        "rewards/rejected": float(rejected_rewards.mean()),
        "rewards/accuracies": float((chosen_rewards > rejected_rewards).float().mean()),
        "rewards/margins": float((chosen_rewards - rejected_rewards).mean()),
        "logps/chosen": float(chosen.detach().mean()),
        "logps/rejected": float(rejected.detach().mean()),
        **nll,
    }
    return losses.mean(), metrics


@torch.no_grad()
def evaluate_pairs(cfg: DPOConfig, model, encoded: EncodedRows, pad_id: int, ref_logps, batch_size: int = 128) -> dict:
    """Held-out pairs: implicit-reward accuracy and margin (KTO's rewards judged on pairs the same way)."""
    scoring = cfg if cfg.loss_type != "kto" else _as_sigmoid(cfg)
    was_training = model.training
    model.eval()
    totals: dict[str, float] = {}
    n = len(encoded.prompts)
    for start in range(0, n, batch_size):
        rows = list(range(start, min(start + batch_size, n)))
        loss, metrics = step_loss(scoring, model, encoded, rows, pad_id, ref_logps)
        for key, value in {"loss": float(loss), **metrics}.items():
            totals[key] = totals.get(key, 0.0) + value * len(rows) / n
    model.train(was_training)
    return {"eval_accuracy": totals["rewards/accuracies"], "eval_margin": totals["rewards/margins"],
            **({"eval_loss": totals["loss"]} if cfg.loss_type != "kto" else {})}


def _as_sigmoid(cfg: DPOConfig) -> DPOConfig:
    import dataclasses

    return dataclasses.replace(cfg, loss_type="sigmoid", label_smoothing=0.0, loss_weights=[], rpo_alpha=0.0)


@managed_run
def train_dpo(cfg: DPOConfig) -> dict:
    kto = cfg.loss_type == "kto"
    n_records = cfg.num_train_samples or cfg.max_steps * cfg.batch_size
    records = preference_records(cfg, n_records, unpaired=kto)  # checked before writing anything
    held_out = preference_records(cfg, cfg.eval_n, split=eval_split(cfg))
    task = None if cfg.eval_dataset else task_of(cfg)
    gold_prompts = task.generate(cfg.eval_n, seed=cfg.eval_seed, split=eval_split(cfg)) if task is not None and hasattr(task, "gold") else None

    ctx = start_run(cfg)
    model, tok = ctx.model, ctx.tokenizer
    pad_id = tok.pad_token_id
    encoded = encode_records(records, tok, cfg.max_length, cfg.max_prompt_length, source=cfg.dataset or "training records")
    encoded_eval = encode_records(held_out, tok, cfg.max_length, cfg.max_prompt_length, source=cfg.eval_dataset or "held-out pairs")
    needs_reference = not set(cfg.loss_types) <= {"simpo", "sft"}  # simpo and the NLL term have no reference
    reference = FrozenReference(model, cfg) if needs_reference else None
    ref_train = ref_eval = reference
    if reference is not None and cfg.precompute_ref_log_probs:
        ref_train = precompute_reference(reference, encoded, pad_id, kto)
        ref_eval = precompute_reference(reference, encoded_eval, pad_id, kto=False)
        reference = None  # freed: nothing below needs the reference model
    order_gen = torch.Generator().manual_seed(cfg.seed)
    epochs = -(-cfg.max_steps * cfg.batch_size // len(records))
    order = torch.cat([torch.randperm(len(records), generator=order_gen) for _ in range(epochs)]).tolist()

    def sample_gold():
        return gold_samples(model, tok, task, gold_prompts, temperature=cfg.eval_temperature,
                            max_new_tokens=cfg.max_new_tokens, seed=cfg.eval_seed)

    extra = ctx.resumed_state.get("extra", {})
    gold_before = extra.get("gold_before") if ctx.start_step else (sample_gold() if gold_prompts else None)
    pairs_before = evaluate_pairs(cfg, model, encoded_eval, pad_id, ref_eval) if ctx.start_step == 0 else None
    if pairs_before:
        ctx.logger.log(0, {"eval/accuracy": pairs_before["eval_accuracy"],
                           **({"eval/gold_mean": gold_report(gold_before)["gold_mean"]} if gold_before else {})})

    t_start, bar = time.time(), progress(cfg.max_steps, cfg.method)
    bar.update(ctx.start_step)
    model.train()
    for step in range(ctx.start_step, cfg.max_steps):
        t0 = time.time()
        rows = order[step * cfg.batch_size : (step + 1) * cfg.batch_size]
        loss, metrics = step_loss(cfg, model, encoded, rows, pad_id, ref_train)
        loss.backward()
        metrics = {"loss": loss.item(), **metrics, "grad_norm": grad_step(ctx, cfg.max_grad_norm),
                   "lr": ctx.scheduler.get_last_lr()[0], "time/step": time.time() - t0}
        done = step + 1
        if cfg.eval_steps and done % cfg.eval_steps == 0 and done < cfg.max_steps:
            metrics.update({f"eval/{k.removeprefix('eval_')}": v for k, v in evaluate_pairs(cfg, model, encoded_eval, pad_id, ref_eval).items()})
            if gold_before:
                metrics.update({f"eval/{k}": v for k, v in gold_report(sample_gold(), gold_before).items()})
        ctx.logger.log(done, metrics)
        bar.update(1)
        bar.set_postfix(loss=f"{metrics['loss']:.3f}", margin=f"{metrics['rewards/margins']:.3f}")
        ctx.end_step(done, cfg, lambda: {"gold_before": gold_before})
    bar.close()
    train_time = time.time() - t_start

    pairs_after = evaluate_pairs(cfg, model, encoded_eval, pad_id, ref_eval)
    summary = {"method": cfg.method, "loss_type": cfg.loss_type, "steps": cfg.max_steps, "train_time_s": train_time,
               "truncated_rows": encoded.truncated, "eval_accuracy_before": pairs_before["eval_accuracy"] if pairs_before else None,
               **pairs_after}
    rows: list[dict] = []
    table = [["held-out pair accuracy (implicit reward)", summary["eval_accuracy_before"], pairs_after["eval_accuracy"]]]
    if gold_before:
        rows = sample_gold()
        after = gold_report(rows, gold_before)
        summary.update({f"eval_{k}": v for k, v in after.items()})
        for row, ref_row in zip(rows, gold_before):
            row["reference_completion"], row["reference_gold"] = ref_row["completion"], ref_row["gold"]
        table += [["gold score of samples (0-5)", after["reference_gold_mean"], after["gold_mean"]],
                  ["win rate vs the starting model", 0.5, after["win_rate"]]]
    summary = finish_run(ctx, cfg.max_steps, rows, summary)
    print(format_table(table, [f"{cfg.method} ({'+'.join(cfg.loss_types)})", "before", "after"]))
    return summary
