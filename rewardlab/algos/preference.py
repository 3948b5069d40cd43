"""Losses learned from preferences rather than from a reward signal (docs/algorithms.md#reward-model and
#preference-losses).

All sequence log-probs here are SUMS over response tokens unless a docstring says otherwise.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

PREFERENCE_LOSS_TYPES = ("sigmoid", "ipo", "cdpo", "simpo")

# Which **opts each loss type reads; anything else is a typo and raises.
_ALLOWED_OPTS: dict[str, dict[str, object]] = {
    "sigmoid": {},
    "cdpo": {},
    "ipo": {},
    "simpo": {"chosen_lengths": None, "rejected_lengths": None, "gamma": 1.375},
}


def bradley_terry_loss(
    chosen_scores: torch.Tensor,
    rejected_scores: torch.Tensor,
    margin: torch.Tensor | float | None = None,
    center_coef: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Reward-model loss mean(-logsigmoid(r_c - r_r - margin)) + center_coef * mean((r_c + r_r)^2).

    chosen_scores [B], rejected_scores [B], margin None / float / [B] -> (loss scalar,
    accuracy scalar, detached). Accuracy is the share of pairs with r_c > r_r strictly: a
    tie is wrong, so a constant reward model scores 0, not 0.5 or 1. The centering term
    (eta ~ 0.01) pins the scores' mean near 0, which the pairwise loss alone leaves free.
    """
    difference = chosen_scores - rejected_scores
    if margin is not None:
        difference = difference - margin
    loss = -F.logsigmoid(difference).mean()
    if center_coef:
        loss = loss + center_coef * (chosen_scores + rejected_scores).square().mean()
    accuracy = (chosen_scores > rejected_scores).to(chosen_scores.dtype).mean().detach()
    return loss, accuracy


def _smoothed_logistic(logits: torch.Tensor, label_smoothing: float) -> torch.Tensor:
    """-(1 - eps) logsigmoid(z) - eps logsigmoid(-z): eps is the chance the label is flipped."""
    return -(1.0 - label_smoothing) * F.logsigmoid(logits) - label_smoothing * F.logsigmoid(-logits)


def preference_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor | None,
    ref_rejected_logps: torch.Tensor | None,
    beta: float,
    loss_type: str,
    label_smoothing: float = 0.0,
    **opts: torch.Tensor | float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Paired preference losses; every input [B] -> (losses [B], chosen_rewards [B], rejected_rewards [B]).

    With h = (logpi_w - logref_w) - (logpi_l - logref_l):
      "sigmoid"  DPO, -logsigmoid(beta h); with label_smoothing > 0 it is cDPO
      "cdpo"     -(1-eps) logsigmoid(beta h) - eps logsigmoid(-beta h), eps = label_smoothing
      "ipo"      (h - 1/(2 beta))^2 on the log-probs exactly as given (summed). TRL's IPO
                 length-normalises each side; pass per-token-mean log-probs to get that variant.
      "simpo"    -logsigmoid(beta logpi_w / |y_w| - beta logpi_l / |y_l| - gamma); no reference
                 (ref_* may be None). opts: chosen_lengths [B], rejected_lengths [B] (required),
                 gamma (default 1.375, paired with beta 2.5). label_smoothing applies as in cDPO.
    Rewards are detached: beta (logpi - logref), or beta * average logpi for simpo.
    """
    if loss_type not in PREFERENCE_LOSS_TYPES:
        raise ValueError(
            f"unknown preference loss_type {loss_type!r}; valid: {', '.join(PREFERENCE_LOSS_TYPES)}"
        )
    unknown = set(opts) - set(_ALLOWED_OPTS[loss_type])
    if unknown:
        allowed = ", ".join(_ALLOWED_OPTS[loss_type]) or "none"
        raise ValueError(
            f"preference loss {loss_type!r} got unexpected options {sorted(unknown)}; it accepts: {allowed}"
        )
    if not 0.0 <= label_smoothing < 0.5:
        raise ValueError(f"label_smoothing must be in [0, 0.5), got {label_smoothing}")
    if loss_type == "ipo" and label_smoothing:
        raise ValueError("label_smoothing has no meaning for the ipo loss; set it to 0")

    if loss_type == "simpo":
        if opts.get("chosen_lengths") is None or opts.get("rejected_lengths") is None:
            raise ValueError("simpo needs chosen_lengths and rejected_lengths (response tokens per row)")
        like = {"dtype": policy_chosen_logps.dtype, "device": policy_chosen_logps.device}
        chosen_avg = policy_chosen_logps / torch.as_tensor(opts["chosen_lengths"], **like).clamp(min=1)
        rejected_avg = policy_rejected_logps / torch.as_tensor(opts["rejected_lengths"], **like).clamp(min=1)
        gamma = float(opts.get("gamma", 1.375))
        losses = _smoothed_logistic(beta * chosen_avg - beta * rejected_avg - gamma, label_smoothing)
        return losses, (beta * chosen_avg).detach(), (beta * rejected_avg).detach()

    if ref_chosen_logps is None or ref_rejected_logps is None:
        raise ValueError(f"preference loss {loss_type!r} needs reference log-probs (only simpo runs without)")
    chosen_log_ratio = policy_chosen_logps - ref_chosen_logps
    rejected_log_ratio = policy_rejected_logps - ref_rejected_logps
    h = chosen_log_ratio - rejected_log_ratio
    if loss_type == "ipo":
        losses = (h - 1.0 / (2.0 * beta)).square()
    else:  # sigmoid and cdpo are one formula; cdpo just names the label-smoothed case
        losses = _smoothed_logistic(beta * h, label_smoothing)
    return losses, (beta * chosen_log_ratio).detach(), (beta * rejected_log_ratio).detach()


def kto_reference_point(policy_kl_logps: torch.Tensor, ref_kl_logps: torch.Tensor) -> torch.Tensor:
    """KTO's z0 = max(0, mean(logpi - logref)) on mismatched (prompt, completion) pairs, detached.

    [B], [B] -> scalar. Under data-parallel training, average the mean across ranks before the
    clamp so every rank uses the same reference point.
    """
    return (policy_kl_logps - ref_kl_logps).mean().clamp(min=0).detach()


def kto_loss(
    policy_logps: torch.Tensor,
    ref_logps: torch.Tensor,
    labels: torch.Tensor,
    kl_ref_point: torch.Tensor | float,
    beta: float = 0.1,
    desirable_weight: float = 1.0,
    undesirable_weight: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """KTO on unpaired examples. policy_logps [B], ref_logps [B], labels bool [B] (True = desirable),
    kl_ref_point scalar -> (losses [B], rewards [B] = beta (logpi - logref), detached).

    desirable:   desirable_weight   * (1 - sigmoid(beta (r - z0)))
    undesirable: undesirable_weight * (1 - sigmoid(beta (z0 - r)))
    z0 is detached: it is a baseline, not something to optimise.
    """
    log_ratio = policy_logps - ref_logps
    z0 = torch.as_tensor(kl_ref_point, dtype=log_ratio.dtype, device=log_ratio.device).detach()
    desirable = labels.bool()
    # 1 - sigmoid(x) = sigmoid(-x), which keeps precision when sigmoid(x) is close to 1.
    desirable_losses = desirable_weight * torch.sigmoid(-beta * (log_ratio - z0))
    undesirable_losses = undesirable_weight * torch.sigmoid(-beta * (z0 - log_ratio))
    losses = torch.where(desirable, desirable_losses, undesirable_losses)
    return losses, (beta * log_ratio).detach()
