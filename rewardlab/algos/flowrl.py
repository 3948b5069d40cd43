"""FlowRL: match the reward distribution instead of maximising the reward (docs/algorithms.md#flowrl).

The target is pi*(y|x) proportional to exp(beta r_hat(x, y)) pi_ref(y|x). A learned log-partition
log Z(x) turns that into a trajectory-balance residual per sequence,

    delta_i = log Z(x_i) + mean_t logp_it - beta r_hat_i - mean_t ref_it,

with log-probs averaged over the valid tokens (length-normalised) and r_hat the group-normalised
reward (the GRPO advantage). The loss is mean_i w_i delta_i^2, where w_i is a stop-gradient
importance weight exp(sum_t (logp_it - old_it)) from the sampling policy to the current one:

    importance="clamp"  min(w, weight_clamp)                (the FlowRL reference code, 10)
    importance="clip"   clip(w, 1 - eps_low, 1 + eps_high)   (the paper's "PPO-style" text)
    importance="none"   w = 1

On-policy (one update per rollout) logp == old and w = 1 whichever option is chosen.
"""

from __future__ import annotations

import torch

FLOWRL_IMPORTANCE = ("clamp", "clip", "none")


def masked_token_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-row mean over valid tokens: [B,T], [B,T] -> [B]; a row with no valid token gives 0."""
    valid = mask.bool()
    return torch.where(valid, values, 0.0).sum(1) / valid.sum(1).clamp(min=1)


def flowrl_importance_weights(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    mask: torch.Tensor,
    importance: str = "clamp",
    weight_clamp: float = 10.0,
    eps_low: float = 0.2,
    eps_high: float | None = None,
) -> torch.Tensor:
    """Sequence importance weights [B], detached: exp(sum over valid tokens of logp - old), then clamp/clip."""
    if importance not in FLOWRL_IMPORTANCE:
        raise ValueError(f"flowrl importance must be one of {', '.join(FLOWRL_IMPORTANCE)}; got {importance!r}")
    valid = mask.bool()
    with torch.no_grad():
        log_ratio = torch.where(valid, logp - old_logp, 0.0).sum(1)
        if importance == "none":
            return torch.ones_like(log_ratio)
        if importance == "clamp":
            # clamp the log first: exp of a large sum would overflow to inf before the clamp
            return log_ratio.clamp(max=torch.log(torch.tensor(weight_clamp)).item()).exp()
        high = eps_low if eps_high is None else eps_high
        return log_ratio.exp().clamp(1.0 - eps_low, 1.0 + high)


def flowrl_loss(
    log_z: torch.Tensor,
    logp: torch.Tensor,
    ref_logp: torch.Tensor,
    old_logp: torch.Tensor,
    normalized_rewards: torch.Tensor,
    mask: torch.Tensor,
    beta: float = 15.0,
    importance: str = "clamp",
    weight_clamp: float = 10.0,
    eps_low: float = 0.2,
    eps_high: float | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Trajectory-balance loss. Shapes: log_z [B] (or [B,1]), logp / ref_logp / old_logp / mask [B,T],
    normalized_rewards [B]. Returns (scalar loss, metrics).

    Gradient reaches log_z and logp; ref_logp, old_logp and the rewards are constants.
    Metrics: delta_mean (mean residual), delta_abs_mean, log_z_mean, importance_weight_mean,
    importance_weight_max.
    """
    if logp.shape != mask.shape or ref_logp.shape != mask.shape or old_logp.shape != mask.shape:
        raise ValueError(
            f"flowrl_loss: logp, ref_logp, old_logp and mask must share one [B,T] shape; got "
            f"{tuple(logp.shape)}, {tuple(ref_logp.shape)}, {tuple(old_logp.shape)}, {tuple(mask.shape)}"
        )
    log_z = log_z.reshape(-1)
    if log_z.shape[0] != logp.shape[0] or normalized_rewards.shape != log_z.shape:
        raise ValueError(
            f"flowrl_loss: log_z and normalized_rewards must be [B] with B = {logp.shape[0]}; got "
            f"{tuple(log_z.shape)} and {tuple(normalized_rewards.shape)}"
        )
    weights = flowrl_importance_weights(logp, old_logp.detach(), mask, importance, weight_clamp, eps_low, eps_high)
    delta = (
        log_z
        + masked_token_mean(logp, mask)
        - beta * normalized_rewards.detach().to(logp.dtype)
        - masked_token_mean(ref_logp.detach(), mask)
    )
    loss = (weights * delta.square()).mean()
    with torch.no_grad():
        stats = torch.stack(
            [delta.mean(), delta.abs().mean(), log_z.mean(), weights.mean(), weights.max()]
        ).tolist()
    names = ("delta_mean", "delta_abs_mean", "log_z_mean", "importance_weight_mean", "importance_weight_max")
    return loss, dict(zip(names, stats))
