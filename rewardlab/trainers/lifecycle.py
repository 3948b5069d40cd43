"""What every trainer does around its loop: run directory, seed, model, optimizer, resume, a clean stop.

Under torchrun (several processes) every process builds the same model from the same seed and loads the same
checkpoint; only the main process (rank 0) claims the run directory and writes to it (config, metrics,
checkpoints, final/, plots); the others log nothing and wait for it at each write."""

from __future__ import annotations

import functools
import json
import logging
import math
import signal
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..config import CommonConfig, ConfigError, save_config
from ..models import apply_lora, load_policy, load_process_reward_model, load_reward_model
from ..models.loading import model_source
from ..monitor import RunLogger, plot_run
from ..runs import load_newest_intact
from . import gather
from .checkpoint import (
    list_checkpoints,
    load_checkpoint,
    save_checkpoint,
    save_final,
    set_seed,
)
from .rundir import StopSignal, TrainingInterrupted, claim_run_dir, release_run_dir

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
    stop: StopSignal = field(default_factory=StopSignal)

    def end_step(self, done: int, cfg: CommonConfig, extra=dict) -> None:
        """After step `done`: a checkpoint every save_steps, and on SIGINT/SIGTERM a checkpoint then
        TrainingInterrupted. `extra()` gives the trainer's own state to save (called only when saving)."""
        stopping = self.stop.received is not None and done < cfg.max_steps  # at the last step: finish normally
        if stopping or (cfg.save_steps and done % cfg.save_steps == 0 and done < cfg.max_steps):
            group = gather.current()
            state = extra()
            path = self.run_dir / f"checkpoint-{done}"
            if group.is_main:
                path = save_checkpoint(self.run_dir, done, self.model, self.tokenizer, self.optimizer, self.scheduler,
                                       state, cfg.save_total_limit)
            group.barrier()
            if stopping:
                raise TrainingInterrupted(self.stop.received, done, path)


class SilentLogger:
    """The logger of a process other than the main one: the main process writes the run's metrics."""

    def log(self, step: int, metrics) -> None:
        pass

    def log_samples(self, step: int, rows) -> None:
        pass

    def close(self) -> None:
        pass


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


def start_run(cfg: CommonConfig, reward_model: bool | str = False) -> RunContext:
    """Create (or reopen, with resume) the run directory, build model + optimizer, restore a checkpoint.

    reward_model: build a scalar-head reward model (load_reward_model) instead of a causal LM; "process": a
    process reward model (load_process_reward_model, two logits per token).
    """
    if cfg.torch_threads:
        torch.set_num_threads(cfg.torch_threads)
    run_dir = cfg.run_dir
    if cfg.model != "tiny":  # a wrong path fails here, before the run directory is touched
        model_source(cfg.model)
    group = gather.start()
    if group.is_main:
        claim_run_dir(run_dir, cfg.resume, cfg.overwrite)
        save_config(cfg, run_dir / "config.yaml")
    group.barrier()
    checkpoints = list_checkpoints(run_dir) if cfg.resume else []
    if cfg.resume and not checkpoints and group.is_main:
        log.warning("resume=True but %s has no complete checkpoint; starting from step 0", run_dir)

    set_seed(cfg.seed)
    loader = {False: load_policy, True: load_reward_model, "process": load_process_reward_model}[reward_model]
    model, tokenizer = loader(cfg.model, dtype=cfg.dtype, device=cfg.device, seed=cfg.seed, model_config=cfg.model_config)
    if cfg.lora_r > 0:
        model = apply_lora(model, r=cfg.lora_r, alpha=cfg.lora_alpha, target_modules=cfg.lora_target_modules,
                           task_type={False: "CAUSAL_LM", True: "SEQ_CLS", "process": "TOKEN_CLS"}[reward_model])
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lr_lambda(cfg.lr_scheduler, cfg.warmup_steps, cfg.max_steps)
    )
    start_step, state = 0, {}
    found = load_newest_intact(run_dir, checkpoints, lambda path: load_checkpoint(path, model, optimizer, scheduler))
    if found is not None:
        path, state = found
        start_step = state["step"]
        log.info("resumed from %s (step %d)", path, start_step)
    # resuming drops logged rows past the checkpoint's step (all of them when no checkpoint was found)
    logger = RunLogger(run_dir, tensorboard=cfg.tensorboard, resume_step=(start_step if state else -1) if cfg.resume else None) \
        if group.is_main else SilentLogger()
    if group.world_size > 1:  # the same weights everywhere, then each process samples its own stream
        torch.manual_seed(cfg.seed * 1009 + group.rank + 7919 * start_step)
    return RunContext(run_dir, model, tokenizer, optimizer, scheduler, logger, start_step, state, StopSignal().install())


def fit_prompt_length(cfg, model: torch.nn.Module) -> None:
    """Online and distillation runs: max_prompt_length + max_completion_length must fit the model's positions
    (the tiny model has 256, GRPO's default prompt budget is 512). Too long: the prompt budget is lowered,
    with a warning saying to what."""
    positions = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    if not positions or cfg.max_prompt_length + cfg.max_completion_length <= positions:
        return
    fitted = positions - cfg.max_completion_length
    if fitted < 1:
        raise ConfigError(f"max_completion_length={cfg.max_completion_length} leaves no room for a prompt in the model's "
                          f"{positions} positions; lower it")
    log.warning("max_prompt_length=%d + max_completion_length=%d exceeds the model's %d positions; prompts are cut "
                "to their last %d tokens", cfg.max_prompt_length, cfg.max_completion_length, positions, fitted)
    cfg.max_prompt_length = fitted


def managed_run(train):
    """Decorates a trainer: whatever happens in it, its signal handlers are removed and its run directory
    is unlocked when it returns or raises."""

    @functools.wraps(train)
    def wrapper(cfg: CommonConfig, *args, **kwargs):
        previous = {sig: signal.getsignal(sig) for sig in StopSignal.SIGNALS}
        try:
            return train(cfg, *args, **kwargs)
        finally:
            if threading.current_thread() is threading.main_thread():
                for sig, handler in previous.items():
                    signal.signal(sig, handler)
            release_run_dir(cfg.run_dir)

    return wrapper


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
    group = gather.current()
    if group.is_main:
        save_final(ctx.run_dir, ctx.model, ctx.tokenizer)
        with open(ctx.run_dir / "eval_samples.jsonl", "w") as fh:
            for row in eval_rows:
                fh.write(json.dumps(row) + "\n")
        (ctx.run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    ctx.logger.close()
    if group.is_main:
        plot_run(ctx.run_dir)
    group.barrier()
    ctx.stop.uninstall()
    return summary
