"""Losses learned from preferences rather than from a reward signal (docs/algorithms.md#reward-model and
#preference-losses).

All sequence log-probs here are SUMS over response tokens unless a docstring says otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

PREFERENCE_LOSS_TYPES = ("sigmoid", "ipo", "cdpo", "simpo", "hinge", "apo_zero", "apo_down", "sft")

# Which **opts each loss type reads; anything else is a typo and raises. Several loss types combine with
# loss_weights (TRL's list form), and rpo_alpha adds the chosen replies' NLL (it reads chosen_lengths).
_ALLOWED_OPTS: dict[str, dict[str, object]] = {
    "sigmoid": {},
    "cdpo": {},
    "ipo": {},
    "hinge": {},
    "apo_zero": {},
    "apo_down": {},
    "simpo": {"chosen_lengths": None, "rejected_lengths": None, "gamma": 1.375},
    "sft": {"chosen_lengths": None},
}
_COMBINING_OPTS = ("loss_weights", "rpo_alpha")
_SMOOTHED = ("sigmoid", "cdpo", "simpo")  # the loss types label_smoothing applies to
_REFERENCE_FREE = ("simpo", "sft")


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
    loss_type: str | Sequence[str],
    label_smoothing: float = 0.0,
    **opts: Any,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Paired preference losses; every input [B] -> (losses [B], chosen_rewards [B], rejected_rewards [B]).

    With r_w = logpi_w - logref_w, r_l = logpi_l - logref_l and h = r_w - r_l:
      "sigmoid"  DPO, -logsigmoid(beta h); with label_smoothing > 0 it is cDPO
      "cdpo"     -(1-eps) logsigmoid(beta h) - eps logsigmoid(-beta h), eps = label_smoothing
      "ipo"      (h - 1/(2 beta))^2 on the log-probs exactly as given (summed). TRL's IPO
                 length-normalises each side; pass per-token-mean log-probs to get that variant.
      "hinge"    relu(1 - beta h) (SLiC)
      "apo_zero" (1 - sigmoid(beta r_w)) + sigmoid(beta r_l): raise chosen, lower rejected (APO-zero)
      "apo_down" sigmoid(beta r_w) + (1 - sigmoid(beta h)): lower both, rejected more (APO-down)
      "simpo"    -logsigmoid(beta logpi_w / |y_w| - beta logpi_l / |y_l| - gamma); no reference
                 (ref_* may be None). opts: chosen_lengths [B], rejected_lengths [B] (required),
                 gamma (default 1.375, paired with beta 2.5). label_smoothing applies as in cDPO.
      "sft"      the NLL of the chosen replies, -sum_i logpi_w,i / sum_i |y_w,i| over the batch (a token
                 mean, as TRL); no reference. opts: chosen_lengths [B] (required). Row i's value is its
                 share, -logpi_w,i * B / sum_j |y_w,j|, so the rows' mean is that token mean.
    loss_type may be a list (TRL's form): the rows' losses are sum_k w_k loss_k, with opts loss_weights
    (one per loss type, default 1.0 each), so the batch mean is sum_k w_k mean(loss_k). opts rpo_alpha
    adds rpo_alpha times the "sft" term (RPO; needs chosen_lengths). Rewards are detached: beta (logpi -
    logref), or beta * average logpi with simpo (or with no reference at all).
    """
    types = (loss_type,) if isinstance(loss_type, str) else tuple(loss_type)
    unknown_types = [t for t in types if t not in PREFERENCE_LOSS_TYPES]
    if unknown_types or not types:
        raise ValueError(
            f"unknown preference loss_type {loss_type!r}; valid: {', '.join(PREFERENCE_LOSS_TYPES)}"
        )
    if len(set(types)) != len(types):
        raise ValueError(f"loss_type {list(types)} names a loss type twice; give each once (weights: loss_weights)")
    weights = opts.pop("loss_weights", None) or [1.0] * len(types)
    rpo_alpha = float(opts.pop("rpo_alpha", 0.0) or 0.0)
    if len(weights) != len(types):
        raise ValueError(f"loss_weights has {len(weights)} entries for {len(types)} loss types {list(types)}; give one each")
    allowed = {name: default for t in types for name, default in _ALLOWED_OPTS[t].items()}
    if rpo_alpha:
        allowed.setdefault("chosen_lengths", None)
    unknown = set(opts) - set(allowed)
    if unknown:
        shown = ", ".join(allowed) or "none"
        raise ValueError(
            f"preference loss {loss_type!r} got unexpected options {sorted(unknown)}; it accepts: {shown}"
            + ("" if len(types) > 1 else f" (and {', '.join(_COMBINING_OPTS)})")
        )
    if not 0.0 <= label_smoothing < 0.5:
        raise ValueError(f"label_smoothing must be in [0, 0.5), got {label_smoothing}")
    if label_smoothing and not set(types) & set(_SMOOTHED):
        raise ValueError(f"label_smoothing has no meaning for the {', '.join(types)} loss; set it to 0 (it applies to "
                         f"{', '.join(_SMOOTHED)})")
    needs_reference = any(t not in _REFERENCE_FREE for t in types)
    if needs_reference and (ref_chosen_logps is None or ref_rejected_logps is None):
        raise ValueError(f"preference loss {loss_type!r} needs reference log-probs (only simpo and sft run without)")
    if ("sft" in types or rpo_alpha) and opts.get("chosen_lengths") is None:
        raise ValueError("the sft term (loss_type sft or rpo_alpha) needs chosen_lengths (response tokens per row)")

    losses = None
    for name, weight in zip(types, weights):
        term = _single_loss(
            policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps, beta, name,
            label_smoothing if name in _SMOOTHED else 0.0, **{k: v for k, v in opts.items() if k in _ALLOWED_OPTS[name]})
        term = term if weight == 1.0 else float(weight) * term
        losses = term if losses is None else losses + term
    if rpo_alpha:
        losses = losses + rpo_alpha * chosen_nll_shares(policy_chosen_logps, opts["chosen_lengths"])
    if "simpo" in types or ref_chosen_logps is None or ref_rejected_logps is None:
        if opts.get("chosen_lengths") is None or opts.get("rejected_lengths") is None:
            return losses, (beta * policy_chosen_logps).detach(), (beta * policy_rejected_logps).detach()
        chosen_avg, rejected_avg = _length_normalised(policy_chosen_logps, policy_rejected_logps, opts)
        return losses, (beta * chosen_avg).detach(), (beta * rejected_avg).detach()
    chosen_log_ratio = policy_chosen_logps - ref_chosen_logps
    rejected_log_ratio = policy_rejected_logps - ref_rejected_logps
    return losses, (beta * chosen_log_ratio).detach(), (beta * rejected_log_ratio).detach()


def chosen_nll_shares(policy_chosen_logps: torch.Tensor, chosen_lengths: torch.Tensor) -> torch.Tensor:
    """[B] shares of the chosen replies' token-mean NLL over the batch: -logpi_w,i * B / sum_j |y_w,j|, whose
    mean over the rows is -sum_i logpi_w,i / sum_i |y_w,i| (TRL's sft loss type; RPO's NLL term)."""
    lengths = torch.as_tensor(chosen_lengths, dtype=policy_chosen_logps.dtype, device=policy_chosen_logps.device)
    return -policy_chosen_logps * policy_chosen_logps.shape[0] / lengths.sum().clamp(min=1)


def _length_normalised(policy_chosen_logps: torch.Tensor, policy_rejected_logps: torch.Tensor, opts: dict):
    like = {"dtype": policy_chosen_logps.dtype, "device": policy_chosen_logps.device}
    chosen_avg = policy_chosen_logps / torch.as_tensor(opts["chosen_lengths"], **like).clamp(min=1)
    rejected_avg = policy_rejected_logps / torch.as_tensor(opts["rejected_lengths"], **like).clamp(min=1)
    return chosen_avg, rejected_avg


def _single_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor | None,
    ref_rejected_logps: torch.Tensor | None,
    beta: float,
    loss_type: str,
    label_smoothing: float,
    **opts: Any,
) -> torch.Tensor:
    """Per-row losses [B] of one loss type (preference_loss has checked the arguments)."""
    if loss_type == "simpo":
        if opts.get("chosen_lengths") is None or opts.get("rejected_lengths") is None:
            raise ValueError("simpo needs chosen_lengths and rejected_lengths (response tokens per row)")
        chosen_avg, rejected_avg = _length_normalised(policy_chosen_logps, policy_rejected_logps, opts)
        gamma = float(opts.get("gamma", 1.375))
        return _smoothed_logistic(beta * chosen_avg - beta * rejected_avg - gamma, label_smoothing)
    if loss_type == "sft":
        return chosen_nll_shares(policy_chosen_logps, opts["chosen_lengths"])
    chosen_log_ratio = policy_chosen_logps - ref_chosen_logps
    rejected_log_ratio = policy_rejected_logps - ref_rejected_logps
    h = chosen_log_ratio - rejected_log_ratio
    if loss_type == "ipo":
        losses = (h - 1.0 / (2.0 * beta)).square()
    elif loss_type == "hinge":
        losses = torch.relu(1.0 - beta * h)
    elif loss_type == "apo_zero":  # 1 - sigmoid(x) as sigmoid(-x), which keeps precision near 1
        losses = torch.sigmoid(-beta * chosen_log_ratio) + torch.sigmoid(beta * rejected_log_ratio)
    elif loss_type == "apo_down":
        losses = torch.sigmoid(beta * chosen_log_ratio) + torch.sigmoid(-beta * h)
    else:  # sigmoid and cdpo are one formula; cdpo just names the label-smoothed case
        losses = _smoothed_logistic(beta * h, label_smoothing)
    return losses


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
