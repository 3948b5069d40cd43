"""Policy-gradient surrogates (docs/algorithms.md#policy-losses): PPO's clip per token (ppo_clip) or per
sequence (gspo), CISPO's capped, detached importance weight (cispo), SAPO's soft gate (sapo).

    POLICY_LOSSES[name](logp [B,T], old_logp [B,T], advantages [B] or [B,T], mask [B,T],
                        eps_low=0.2, eps_high=None, **options) -> (per_token_loss [B,T], metrics)

per_token_loss is 0 at masked positions; reduce it with an entry of AGGREGATIONS. Advantages
of shape [B] are broadcast over the tokens of each row. eps_high=None means eps_high = eps_low;
DAPO's clip-higher uses eps_low 0.2, eps_high 0.28. A loss with settings of its own lists them in
`fn.options` ({keyword: config field}); the loop passes them (sapo's temperatures).

Metrics (python floats, over valid tokens):
    clip_fraction       share of tokens whose gradient is zero because of the clip (cispo: whose weight was capped)
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


def _ratio_stats(ratio: torch.Tensor, valid: torch.Tensor, capped: torch.Tensor | None = None) -> dict[str, float]:
    """clip_fraction (= clip_fraction_high: the share of valid tokens in `capped`; 0 without), ratio_mean, ratio_max."""
    with torch.no_grad():
        n_valid = valid.sum().clamp(min=1)
        capped_share = (capped & valid).sum() / n_valid if capped is not None else ratio.new_zeros(())
        ratio_max = torch.where(valid, ratio, float("-inf")).max() if valid.any() else ratio.new_zeros(())
        stats = torch.stack([capped_share, torch.where(valid, ratio, 0.0).sum() / n_valid, ratio_max]).tolist()
    return {"clip_fraction": stats[0], "clip_fraction_low": 0.0, "clip_fraction_high": stats[0],
            "ratio_mean": stats[1], "ratio_max": stats[2]}


@POLICY_LOSSES.register("cispo")
def cispo_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    eps_low: float = 0.2,
    eps_high: float | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """CISPO (MiniMax-M1), as TRL's loss_type=cispo: -sg(min(rho_t, eps_max)) * A_t * logp_t.

    The importance weight rho_t = exp(logp_t - old_t) is capped from above at eps_max and detached, so
    every token keeps a gradient (REINFORCE's, scaled by the weight); nothing is clipped to zero as in
    PPO. eps_max is eps_high, the cap on the weight itself (ScaleRL's epsilon_max, 5.0 recommended), not
    1 + eps_high; eps_high=None caps at eps_low, as TRL does when epsilon_high is unset. No lower cap.
    clip_fraction is the share of tokens whose weight was capped.
    """
    valid = mask.bool()
    log_ratio = torch.where(valid, logp - old_logp.detach(), 0.0)
    ratio = log_ratio.exp()
    cap = eps_low if eps_high is None else eps_high
    weight = ratio.clamp(max=cap).detach()
    per_token_loss = torch.where(valid, -weight * _broadcast_advantages(advantages, logp) * torch.where(valid, logp, 0.0), 0.0)
    return per_token_loss, _ratio_stats(ratio, valid, capped=ratio > cap)


@POLICY_LOSSES.register("sapo")
def sapo_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    eps_low: float = 0.2,
    eps_high: float | None = None,
    tau_pos: float = 1.0,
    tau_neg: float = 1.05,
) -> tuple[torch.Tensor, dict[str, float]]:
    """SAPO (soft adaptive policy optimisation), as TRL's loss_type=sapo: -(4 / tau) sigmoid(tau (rho_t - 1)) A_t.

    tau = tau_pos where A_t > 0, else tau_neg. The gate's slope, d/d rho = 4 s (1 - s) with
    s = sigmoid(tau (rho - 1)), is 1 on-policy (rho = 1: the plain policy gradient) and fades smoothly as the
    ratio leaves 1, faster for the larger tau, instead of PPO's hard cut; eps_low and eps_high are not used.
    Metrics: no token is clipped (clip_fraction 0); gate_mean is the mean slope over valid tokens.
    """
    valid = mask.bool()
    log_ratio = torch.where(valid, logp - old_logp.detach(), 0.0)
    ratio = log_ratio.exp()
    adv = _broadcast_advantages(advantages, logp)
    tau = torch.where(adv > 0, torch.full_like(ratio, tau_pos), torch.full_like(ratio, tau_neg))
    gate = torch.sigmoid(tau * (ratio - 1)) * 4 / tau
    per_token_loss = torch.where(valid, -gate * adv, 0.0)
    stats = _ratio_stats(ratio, valid)
    with torch.no_grad():
        sig = torch.sigmoid(tau * (ratio - 1))
        stats["gate_mean"] = float(torch.where(valid, 4 * sig * (1 - sig), 0.0).sum() / valid.sum().clamp(min=1))
    return per_token_loss, stats


sapo_loss.options = {"tau_pos": "sapo_temperature_pos", "tau_neg": "sapo_temperature_neg"}  # type: ignore[attr-defined]
