"""Clipped policy-gradient surrogates (docs/algorithms.md#policy-losses).

    POLICY_LOSSES[name](logp [B,T], old_logp [B,T], advantages [B] or [B,T], mask [B,T],
                        eps_low=0.2, eps_high=None) -> (per_token_loss [B,T], metrics)

per_token_loss is 0 at masked positions; reduce it with an entry of AGGREGATIONS. Advantages
of shape [B] are broadcast over the tokens of each row. eps_high=None means eps_high = eps_low;
DAPO's clip-higher uses eps_low 0.2, eps_high 0.28.

Metrics (python floats, over valid tokens):
    clip_fraction       share of tokens whose gradient is zero because of the clip
    clip_fraction_low   ... because the ratio fell below 1 - eps_low with A < 0
    clip_fraction_high  ... because the ratio rose above 1 + eps_high with A > 0
    ratio_mean, ratio_max
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from rewardlab.registry import Registry

POLICY_LOSSES: Registry[Callable[..., tuple[torch.Tensor, dict[str, float]]]] = Registry("policy loss")


def _broadcast_advantages(advantages: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """[B] or [B,T] -> [B,T], detached: the advantage is a constant of the surrogate."""
    if advantages.dim() == 1 and advantages.shape[0] == like.shape[0]:
        advantages = advantages.unsqueeze(1).expand_as(like)
    elif advantages.shape != like.shape:
        raise ValueError(
            f"advantages must be [B] or [B,T] matching logp {tuple(like.shape)}; got {tuple(advantages.shape)}"
        )
    return advantages.detach().to(like.dtype)


def _clipped_surrogate(
    ratio: torch.Tensor,
    advantages: torch.Tensor,
    valid: torch.Tensor,
    eps_low: float,
    eps_high: float | None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """-min(ratio A, clip(ratio, 1-eps_low, 1+eps_high) A) per token, plus clip metrics."""
    eps_high = eps_low if eps_high is None else eps_high
    low, high = 1.0 - eps_low, 1.0 + eps_high
    # The clipped branch wins the max(-A rho, -A clip(rho)) exactly when the ratio has left
    # the trust region in the direction the advantage pushes it. Selecting it with where()
    # (instead of torch.maximum, which splits the gradient on ties) makes "clipped" and
    # "zero gradient" the same set of tokens, so the metric is exact.
    clipped_high = valid & (advantages > 0) & (ratio > high)
    clipped_low = valid & (advantages < 0) & (ratio < low)
    clipped = clipped_high | clipped_low
    unclipped_loss = -advantages * ratio
    clipped_loss = -advantages * ratio.clamp(low, high)
    per_token_loss = torch.where(valid, torch.where(clipped, clipped_loss, unclipped_loss), 0.0)

    with torch.no_grad():
        n_valid = valid.sum().clamp(min=1)
        ratio_valid = torch.where(valid, ratio, 0.0)
        ratio_max = torch.where(valid, ratio, float("-inf")).max() if valid.any() else ratio.new_zeros(())
        stats = torch.stack(
            [
                clipped.sum() / n_valid,
                clipped_low.sum() / n_valid,
                clipped_high.sum() / n_valid,
                ratio_valid.sum() / n_valid,
                ratio_max,
            ]
        ).tolist()  # one device sync for all five numbers
    names = ("clip_fraction", "clip_fraction_low", "clip_fraction_high", "ratio_mean", "ratio_max")
    return per_token_loss, dict(zip(names, stats))


@POLICY_LOSSES.register("ppo_clip")
def ppo_clip_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    eps_low: float = 0.2,
    eps_high: float | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """PPO / GRPO token-level clipped surrogate with ratio rho_t = exp(logp_t - old_t). Shapes: module doc."""
    valid = mask.bool()
    # Zero the log-ratio at masked positions before exp: a filler log-prob there (e.g. -inf)
    # would give an inf ratio whose 0-weighted gradient is still NaN.
    log_ratio = torch.where(valid, logp - old_logp.detach(), 0.0)
    return _clipped_surrogate(
        log_ratio.exp(), _broadcast_advantages(advantages, logp), valid, eps_low, eps_high
    )


@POLICY_LOSSES.register("gspo")
def gspo_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    eps_low: float = 0.2,
    eps_high: float | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """GSPO: clip the sequence ratio s_i = exp(mean over valid tokens of (logp - old)).

    The GSPO paper's clip range is far narrower than PPO's, and the defaults here are PPO's:
    callers should pass eps_low=3e-4, eps_high=4e-4. s_i is broadcast to every valid token of
    row i, so each token carries the whole sequence loss and aggregating with
    seq_mean_token_mean gives exactly one loss per sequence; the gradient reaches every token
    through the mean inside s_i. Ratio metrics are token-weighted like PPO's.
    """
    valid = mask.bool()
    log_ratio = torch.where(valid, logp - old_logp.detach(), 0.0)
    sequence_log_ratio = log_ratio.sum(dim=1) / valid.sum(dim=1).clamp(min=1)
    ratio = sequence_log_ratio.exp().unsqueeze(1).expand_as(logp)
    return _clipped_surrogate(ratio, _broadcast_advantages(advantages, logp), valid, eps_low, eps_high)
