"""The rollout-trainer mismatch: an engine that samples with its own copy of the weights or its own kernels
(vLLM) reports log-probs that differ from the ones the trainer recomputes for the same tokens. The loss is
corrected by an importance weight of trainer over engine (TIS and its masked variants; TRL's
vllm_importance_sampling_* settings), and the size of the mismatch is logged every step
(docs/algorithms.md#rollout-trainer-mismatch).

    mismatch_weights(trainer_logp, engine_logp, mask, mode, clip_min, clip_max) -> (weights [B,T], metrics)
    mismatch_metrics(trainer_logp, engine_logp, mask) -> {abs_diff, kl}
"""

from __future__ import annotations

import torch

IS_MODES = ("token_truncate", "token_mask", "sequence_truncate", "sequence_mask")


def mismatch_weights(
    trainer_logp: torch.Tensor,
    engine_logp: torch.Tensor,
    mask: torch.Tensor,
    mode: str = "sequence_mask",
    clip_min: float = 0.0,
    clip_max: float = 3.0,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Per-token importance weights, [B,T] -> [B,T] detached, 0 where masked.

    token_*:    r_t = exp(logp_trainer(y_t) - logp_engine(y_t))
    sequence_*: r = exp(sum_t (logp_trainer - logp_engine)), the same for every token of the sequence
    *_truncate: w = clip(r, clip_min, clip_max)      (TIS)
    *_mask:     w = r inside [clip_min, clip_max], else 0 (the token or the whole sequence leaves the loss)
    """
    if mode not in IS_MODES:
        raise ValueError(f"importance sampling mode {mode!r}; choose one of: {', '.join(IS_MODES)}")
    valid = mask.bool()
    diff = torch.where(valid, trainer_logp.detach() - engine_logp.detach(), 0.0)
    log_ratio = diff.sum(1, keepdim=True).expand_as(diff) if mode.startswith("sequence") else diff
    ratio = log_ratio.exp()
    if mode.endswith("truncate"):
        weight = ratio.clamp(min=clip_min, max=clip_max)
        outside = torch.zeros_like(valid)
    else:
        outside = (ratio < clip_min) | (ratio > clip_max)
        weight = torch.where(outside, 0.0, ratio)
    weight = torch.where(valid, weight, 0.0)
    kept = ratio[valid]
    metrics = {"sampling/importance_sampling_ratio/min": float(kept.min()) if kept.numel() else 1.0,
               "sampling/importance_sampling_ratio/mean": float(kept.mean()) if kept.numel() else 1.0,
               "sampling/importance_sampling_ratio/max": float(kept.max()) if kept.numel() else 1.0,
               "sampling/masked_tokens": float((outside & valid).sum() / valid.sum().clamp(min=1))}
    return weight, metrics


def mismatch_metrics(trainer_logp: torch.Tensor, engine_logp: torch.Tensor, mask: torch.Tensor) -> dict[str, float]:
    """How far the engine's log-probs are from the trainer's on the sampled tokens: the mean absolute difference,
    and KL(engine || trainer) by the k3 estimate on the engine's samples, (r - 1) - log r with
    r = p_trainer / p_engine (>= 0, exact 0 when they agree)."""
    valid = mask.bool()
    diff = (trainer_logp.detach() - engine_logp.detach())[valid]
    if not diff.numel():
        return {"sampling/logprob_abs_diff": 0.0, "sampling/mismatch_kl": 0.0}
    return {"sampling/logprob_abs_diff": float(diff.abs().mean()), "sampling/mismatch_kl": float((diff.exp() - 1 - diff).mean())}
