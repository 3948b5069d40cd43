"""Critic loss for PPO (docs/algorithms.md#value-loss)."""

from __future__ import annotations

import torch


def explained_variance(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> float:
    """1 - Var(target - pred) / Var(target) over valid tokens; shapes [B,T] (or any, all equal).

    1 is a perfect critic, 0 is no better than predicting the mean, negative is worse.
    NaN when the target has no variance (the ratio is undefined there).
    """
    with torch.no_grad():
        valid = mask.bool()
        target_valid = target[valid].double()
        if target_valid.numel() < 2:
            return float("nan")
        target_var = target_valid.var()
        if target_var == 0:
            return float("nan")
        residual_var = (target_valid - pred[valid].double()).var()
        return float(1.0 - residual_var / target_var)


def value_loss(
    values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    mask: torch.Tensor,
    clip_range: float | None = 0.2,
) -> tuple[torch.Tensor, dict[str, float]]:
    """0.5 * masked mean of max((V - R)^2, (clip(V, V_old - c, V_old + c) - R)^2).

    values [B,T] (with grad), old_values [B,T] (the critic at rollout time), returns [B,T],
    mask [B,T] -> (scalar loss, {"value_clip_fraction", "explained_variance"}).
    Taking the max makes the clip pessimistic: once the clipped prediction is the worse one,
    the gradient stops, so the critic cannot move more than c away from V_old per rollout.
    clip_range=None turns clipping off. old_values and returns are detached.
    """
    valid = mask.bool()
    values = torch.where(valid, values, 0.0)
    old_values = torch.where(valid, old_values.detach(), 0.0)
    returns = torch.where(valid, returns.detach(), 0.0)
    unclipped_error = (values - returns).square()
    if clip_range is None:
        per_token = unclipped_error
        clipped_active = torch.zeros_like(valid)
    else:
        clipped_values = old_values + (values - old_values).clamp(-clip_range, clip_range)
        clipped_error = (clipped_values - returns).square()
        clipped_active = valid & (clipped_error > unclipped_error)
        per_token = torch.where(clipped_active, clipped_error, unclipped_error)
    n_valid = valid.sum().clamp(min=1)
    loss = 0.5 * torch.where(valid, per_token, 0.0).sum() / n_valid
    metrics = {
        "value_clip_fraction": float(clipped_active.sum() / n_valid),
        "explained_variance": explained_variance(values, returns, valid),
    }
    return loss, metrics
