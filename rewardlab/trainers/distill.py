"""Distilling a teacher into a student: sequences -> teacher scores -> per-token loss -> optimizer step.

Where each step's sequences come from:
    the student's own samples   opd always; gkd with probability lmbda (on-policy: the student is
                                corrected where it actually goes)
    off-policy sequences        gkd otherwise and sft: the teacher's samples or the dataset's completions

The loss (algos/distill.py, docs/algorithms.md#distillation):
    opd  per-token advantage A_t = -(logp_S - logp_T) (G-OPD: lambda logp_T - (lambda-1) logp_ref - logp_S),
         surrogate -A_t logp_S, token mean
    reopold  opd's reward with a floor, exploring (below-floor tokens left out) for the first reopold_switch of
         the steps, then refining (clipped rewards on the highest-entropy tokens): algos/distill.py
    gkd  generalised JSD_beta between the teacher's and the student's next-token distributions at every
         completion position, in chunks of positions so no [B, C, V] float32 tensor is built at once
    sft  -logp_S of the sequence's tokens (sequence-level distillation when the sequences are the teacher's)
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import torch

from ..algos import generalized_jsd, opd_advantages, reopold_advantages, token_mean
from ..config import ConfigError, DistillConfig
from ..data.collate import left_pad, right_pad
from ..models import last_hidden_states, load_policy, token_logprobs
from ..monitor import format_table, progress
from ..rollout import HFEngine, SamplingParams
from .evaluate import evaluate_accuracy
from .inputs import (
    NO_EVAL_DATA,
    encode_completion,
    encode_prompt,
    eval_records,
    eval_source,
    train_records,
    verifier,
)
from .lifecycle import finish_run, fit_prompt_length, grad_step, managed_run, start_run

JSD_CHUNK_POSITIONS = 1024


def load_frozen(path: str, cfg: DistillConfig, device: torch.device, model_config: dict | None = None):
    model, tokenizer = load_policy(path, dtype=cfg.dtype, device=str(device), seed=cfg.seed, model_config=model_config)
    return model.requires_grad_(False).eval(), tokenizer


def check_same_vocabulary(student_tok, teacher_tok, teacher: str) -> None:
    if student_tok.get_vocab() != teacher_tok.get_vocab():
        raise ConfigError(
            f"the teacher {teacher} has a different tokenizer from the student ({len(teacher_tok)} vs {len(student_tok)} "
            "tokens or different ids); token-level distillation needs a shared vocabulary. Use a student built "
            "with the teacher's tokenizer, or loss_type=sft on the teacher's decoded samples."
        )


def jsd_per_token(student, teacher, input_ids, attention, C: int, beta: float, temperature: float) -> torch.Tensor:
    """[B, C] generalised JSD at each completion position, the LM heads run over chunks of positions."""
    hidden_s = last_hidden_states(student.get_decoder(), input_ids, attention)[:, -C - 1 : -1]
    with torch.no_grad():
        hidden_t = last_hidden_states(teacher.get_decoder(), input_ids, attention)[:, -C - 1 : -1]
    B = input_ids.shape[0]
    flat_s, flat_t = hidden_s.reshape(B * C, -1), hidden_t.reshape(B * C, -1)
    head_s, head_t = student.get_output_embeddings(), teacher.get_output_embeddings()
    parts = []
    for start in range(0, B * C, JSD_CHUNK_POSITIONS):
        rows = slice(start, start + JSD_CHUNK_POSITIONS)
        with torch.no_grad():
            teacher_logits = head_t(flat_t[rows])
        parts.append(generalized_jsd(head_s(flat_s[rows]), teacher_logits, beta, temperature))
    return torch.cat(parts).view(B, C)


@managed_run
def train_distill(cfg: DistillConfig) -> dict:
    records = train_records(cfg, cfg.max_steps * cfg.batch_size, required=("prompt", "completion") if cfg.off_policy_source == "dataset" and (cfg.loss_type == "sft" or cfg.lmbda < 1) else ("prompt",))
    held_out, verify = (eval_records(cfg) if eval_source(cfg) else []), verifier(cfg)  # no eval_dataset with a dataset: none
    if not Path(cfg.teacher).exists():
        raise FileNotFoundError(f"teacher {cfg.teacher!r} not found; pass a run's final/ directory or a Hugging Face model directory")
    ctx = start_run(cfg)
    student, tok = ctx.model, ctx.tokenizer
    fit_prompt_length(cfg, student)
    device = next(student.parameters()).device
    with torch.random.fork_rng(devices=[]):  # loading must not move the run's RNG
        teacher, teacher_tok = load_frozen(cfg.teacher, cfg, device)
        check_same_vocabulary(tok, teacher_tok, cfg.teacher)
        reference = load_frozen(cfg.model, cfg, device, cfg.model_config)[0] if cfg.loss_type == "opd" and cfg.opd_lambda != 1.0 else None
    sampling = SamplingParams(cfg.max_completion_length, cfg.temperature)
    student_engine, teacher_engine = HFEngine(student, tok), HFEngine(teacher, tok)
    order = torch.randperm(len(records), generator=torch.Generator().manual_seed(cfg.seed)).tolist()

    def evaluate() -> tuple[float, list[dict]]:
        return evaluate_accuracy(student, tok, held_out, verify, cfg.max_completion_length)

    teacher_accuracy, _ = evaluate_accuracy(teacher, tok, held_out, verify, cfg.max_completion_length)
    initial_eval = None
    if ctx.start_step == 0:
        initial_eval, _ = evaluate()
        ctx.logger.log(0, {"eval/accuracy": initial_eval, "eval/teacher_accuracy": teacher_accuracy})
    t_start, bar = time.time(), progress(cfg.max_steps, "distill")
    bar.update(ctx.start_step)
    for step in range(ctx.start_step, cfg.max_steps):
        t0 = time.time()
        batch = [records[order[(step * cfg.batch_size + i) % len(order)]] for i in range(cfg.batch_size)]
        prompts = [encode_prompt(r["prompt"], tok, cfg.max_prompt_length)[0] for r in batch]
        # 1. sequences: the student's own samples, the teacher's, or the dataset's completions
        # the coin is a pure function of (seed, step), so a resumed run makes the same choices
        on_policy = cfg.loss_type in ("opd", "reopold") or (cfg.loss_type == "gkd" and random.Random(f"{cfg.seed}-{step}").random() < cfg.lmbda)
        if on_policy or cfg.off_policy_source == "teacher":
            student.eval()
            rollout = (student_engine if on_policy else teacher_engine).generate(prompts, 1, sampling)
            prompt_ids, prompt_mask = rollout.prompt_ids, rollout.prompt_mask
            completion_ids, completion_mask = rollout.completion_ids, rollout.completion_mask
        else:
            prompt_ids, prompt_mask = left_pad(prompts, tok.pad_token_id)
            completion_ids, completion_mask = right_pad([encode_completion(r, tok) for r in batch], tok.pad_token_id)
        input_ids = torch.cat([prompt_ids, completion_ids], 1).to(device)
        attention = torch.cat([prompt_mask, completion_mask], 1).to(device)
        mask, C = completion_mask.to(device), completion_ids.shape[1]
        t_sample = time.time() - t0

        # 2. teacher scores and 3. the per-token loss
        student.train()
        metrics: dict[str, float] = {}
        if cfg.loss_type == "gkd":
            loss = token_mean(jsd_per_token(student, teacher, input_ids, attention, C, cfg.beta, cfg.temperature), mask)
            metrics["jsd"] = loss.item()
        else:
            logp, entropy = token_logprobs(student, input_ids, attention, C, cfg.temperature)
            if cfg.loss_type == "sft":
                loss = token_mean(-logp, mask)
            else:
                with torch.no_grad():
                    teacher_logp = token_logprobs(teacher, input_ids, attention, C, cfg.temperature)[0]
                    ref_logp = token_logprobs(reference, input_ids, attention, C, cfg.temperature)[0] if reference is not None else None
                trained = mask
                if cfg.loss_type == "reopold":
                    phase = "explore" if step < cfg.reopold_switch * cfg.max_steps else "refine"
                    advantages, trained, reopold_metrics = reopold_advantages(
                        logp, teacher_logp, entropy, mask, cfg.reopold_lambda, cfg.reopold_entropy_top, phase)
                    metrics.update(reopold_metrics)
                else:
                    advantages = opd_advantages(logp, teacher_logp, mask, cfg.opd_lambda, ref_logp)
                loss = token_mean(-advantages * logp, trained)
                valid = mask.bool()
                metrics["reverse_kl"] = float((logp.detach() - teacher_logp)[valid].mean())
                metrics["advantage_mean"] = float(advantages[valid].mean())
        loss.backward()
        metrics.update({"loss": loss.item(), "grad_norm": grad_step(ctx, cfg.max_grad_norm), "lr": ctx.scheduler.get_last_lr()[0],
                        "on_policy": float(on_policy), "completion_length": float(mask.sum(1).float().mean()),
                        "time/sample": t_sample, "time/step": time.time() - t0})
        done = step + 1
        if cfg.eval_steps and done % cfg.eval_steps == 0 and done < cfg.max_steps:
            metrics["eval/accuracy"], _ = evaluate()
        ctx.logger.log(done, metrics)
        bar.update(1)
        bar.set_postfix(loss=f"{metrics['loss']:.3f}")
        ctx.end_step(done, cfg)
    bar.close()
    train_time = time.time() - t_start

    student.eval()
    accuracy, rows = evaluate()
    summary = finish_run(ctx, cfg.max_steps, rows, {
        "method": "distill", "loss_type": cfg.loss_type, "steps": cfg.max_steps, "eval_accuracy_before": initial_eval,
        "eval_accuracy": accuracy, "teacher_accuracy": teacher_accuracy, "eval_data": eval_source(cfg) or NO_EVAL_DATA,
        "train_time_s": train_time,
        "student_parameters": sum(p.numel() for p in student.parameters()),
        "teacher_parameters": sum(p.numel() for p in teacher.parameters()),
    })
    print(format_table([[cfg.loss_type, teacher_accuracy, initial_eval, accuracy, f"{train_time:.0f}s"]],
                       ["distill", "teacher accuracy", "student before", "after", "time"]))
    return summary
