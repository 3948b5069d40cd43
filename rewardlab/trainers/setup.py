"""What every trainer does before its loop: run directory, seed, model, optimizer, resume."""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..config import CommonConfig, save_config
from ..models import apply_lora, load_policy, load_reward_model
from ..monitor import RunLogger, plot_run
from .checkpoint import list_checkpoints, load_checkpoint, save_final, set_seed

log = logging.getLogger(__name__)


@dataclass
class RunContext:
    run_dir: Path
    model: torch.nn.Module
    tokenizer: Any
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    logger: RunLogger
    start_step: int  # first step still to run (0 for a fresh run)
    resumed_state: dict[str, Any]


def lr_lambda(kind: str, warmup: int, total: int):
    def factor(step: int) -> float:
        if warmup and step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        if kind == "linear":
            return max(0.0, 1.0 - progress)
        if kind == "cosine":  # decays to 10% of the peak, not 0: the last steps still learn
            return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
        return 1.0

    return factor


def start_run(cfg: CommonConfig, reward_model: bool = False) -> RunContext:
    """Create (or reopen, with resume) the run directory, build model + optimizer, restore a checkpoint.

    reward_model: build a scalar-head reward model (load_reward_model) instead of a causal LM.
    """
    if cfg.torch_threads:
        torch.set_num_threads(cfg.torch_threads)
    run_dir = cfg.run_dir
    checkpoints = list_checkpoints(run_dir) if cfg.resume else []
    if cfg.resume and not checkpoints:
        log.warning("resume=True but %s has no complete checkpoint; starting from step 0", run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, run_dir / "config.yaml")

    set_seed(cfg.seed)
    loader = load_reward_model if reward_model else load_policy
    model, tokenizer = loader(cfg.model, dtype=cfg.dtype, device=cfg.device, seed=cfg.seed, model_config=cfg.model_config)
    if cfg.lora_r > 0:
        model = apply_lora(model, r=cfg.lora_r, alpha=cfg.lora_alpha, target_modules=cfg.lora_target_modules,
                           task_type="SEQ_CLS" if reward_model else "CAUSAL_LM")
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lr_lambda(cfg.lr_scheduler, cfg.warmup_steps, cfg.max_steps)
    )
    start_step, state = 0, {}
    if checkpoints:
        state = load_checkpoint(checkpoints[-1], model, optimizer, scheduler)
        start_step = state["step"]
        log.info("resumed from %s (step %d)", checkpoints[-1], start_step)
    logger = RunLogger(run_dir, tensorboard=cfg.tensorboard, resume_step=start_step if checkpoints else None)
    return RunContext(run_dir, model, tokenizer, optimizer, scheduler, logger, start_step, state)


def optimizer_step(params, optimizer: torch.optim.Optimizer, max_grad_norm: float, scheduler=None) -> float:
    """Clip (max_grad_norm > 0), step, schedule (when given), zero. Returns the gradient norm before clipping."""
    params = [p for p in params if p.grad is not None]
    if max_grad_norm > 0:
        norm = float(torch.nn.utils.clip_grad_norm_(params, max_grad_norm))
    else:
        norm = float(torch.norm(torch.stack([p.grad.norm() for p in params]))) if params else 0.0
    optimizer.step()
    if scheduler is not None:
        scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return norm


def grad_step(ctx: RunContext, max_grad_norm: float) -> float:
    """The run's model: clip, step, schedule, zero. Returns the gradient norm before clipping."""
    return optimizer_step(ctx.model.parameters(), ctx.optimizer, max_grad_norm, ctx.scheduler)


def finish_run(ctx: RunContext, step: int, eval_rows: list[dict], summary: dict[str, Any],
               eval_extra: dict[str, float] | None = None) -> dict[str, Any]:
    """The end of every run: final/ model, per-sample held-out results, summary.json, plots. `eval_extra`:
    more metrics of the final evaluation to log next to eval/accuracy (an environment's eval/env/...)."""
    ctx.logger.log(step, {"eval/accuracy": summary["eval_accuracy"], **(eval_extra or {})})
    save_final(ctx.run_dir, ctx.model, ctx.tokenizer)
    with open(ctx.run_dir / "eval_samples.jsonl", "w") as fh:
        for row in eval_rows:
            fh.write(json.dumps(row) + "\n")
    (ctx.run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    ctx.logger.close()
    plot_run(ctx.run_dir)
    return summary
