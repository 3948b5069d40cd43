"""Distillation and self-distillation (docs/algorithms.md#distillation and
#self-distillation-sdpo-rlsd-srpo).

Full-distribution losses (teacher and student logits over the vocabulary, any leading shape [..., V]):

    kl_divergence(p_logprobs, q_logprobs)                 KL(p || q) per position
    generalized_jsd(student_logits, teacher_logits, beta) GKD's JSD_beta per position
    distill_loss(student_logits, teacher_logits, mask, beta) -> (token-mean loss, metrics)
    topk_tail_logprobs(student_logprobs, teacher_logprobs, k) the student's top-k tokens + one tail bucket

Direction, the usual trap: KL(p || q) = sum_v p_v (log p_v - log q_v). Forward KL(T || S) makes the
student cover every mode of the teacher; reverse KL(S || T) lets it pick modes. torch's
F.kl_div(input=log S, target=log T, log_target=True) computes KL(T || S), the forward one.

Sampled-token forms (only the log-probs of the tokens the student wrote, [B,T]):

    opd_advantages(student_logp, teacher_logp, mask, lam, ref_logp)  on-policy distillation / G-OPD
    reopold_advantages(student_logp, teacher_logp, entropy, mask, lam, top, phase)
                                                                     REOPOLD: clipped token reward + token mask
    sampled_token_distill_loss(logp, teacher_logp, old_logp, mask)   SDPO with alpha = 1
    rlsd_advantages(advantages, teacher_logp, logp, mask, lam, eps)  RLSD per-token reweighting
    entropy_weights(teacher_entropy, mask)                           SRPO's weight on distilled tokens
    srpo_route(correct, has_teacher)                                 SRPO: which rows are distilled

Nothing here needs a model: callers compute the logits or log-probs (in chunks of positions when the
vocabulary is large) and pass tensors in.
"""

from __future__ import annotations

import math

import torch

from rewardlab.algos.aggregation import token_mean


def _log_probs(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    if temperature <= 0:
        raise ValueError(f"distillation temperature must be > 0, got {temperature}")
    return torch.log_softmax(logits.float() / temperature, dim=-1)


def kl_divergence(p_logprobs: torch.Tensor, q_logprobs: torch.Tensor) -> torch.Tensor:
    """KL(p || q) = sum_v p_v (log p_v - log q_v) over the last dim: [..., V], [..., V] -> [...].

    Entries where p_v = 0 contribute 0 (not NaN), also when q_v = 0 there.
    """
    p = p_logprobs.exp()
    terms = torch.where(p > 0, p * (p_logprobs - q_logprobs), 0.0)
    return terms.sum(-1)


def generalized_jsd(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, beta: float = 0.5, temperature: float = 1.0
) -> torch.Tensor:
    """GKD's generalised Jensen-Shannon divergence per position: [..., V], [..., V] -> [...].

    M = beta T + (1 - beta) S, JSD_beta = beta KL(T || M) + (1 - beta) KL(S || M). The formula vanishes at
    both ends (M becomes S or T), while JSD_beta / beta -> KL(T || S) as beta -> 0 and
    JSD_beta / (1 - beta) -> KL(S || T) as beta -> 1, so, as in GKD, the end points are defined as those
    limits: beta = 0 is the forward KL(T || S), beta = 1 the reverse KL(S || T).
    The gradient flows into the student only; the teacher is a constant.
    """
    if not 0.0 <= beta <= 1.0:
        raise ValueError(f"generalized_jsd: beta must be in [0, 1], got {beta}")
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(
            f"student and teacher logits must have the same shape [..., V]; got {tuple(student_logits.shape)} "
            f"and {tuple(teacher_logits.shape)} (do the two models share a tokenizer?)"
        )
    log_s = _log_probs(student_logits, temperature)
    log_t = _log_probs(teacher_logits.detach(), temperature)
    if beta == 0.0:
        return kl_divergence(log_t, log_s)
    if beta == 1.0:
        return kl_divergence(log_s, log_t)
    log_m = torch.logsumexp(torch.stack([log_t + math.log(beta), log_s + math.log(1.0 - beta)]), dim=0)
    return beta * kl_divergence(log_t, log_m) + (1.0 - beta) * kl_divergence(log_s, log_m)


def distill_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    mask: torch.Tensor,
    beta: float = 0.5,
    temperature: float = 1.0,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Token-mean generalised JSD over valid positions. logits [B,T,V], mask [B,T] -> (scalar, metrics).

    Metrics: jsd (the loss), forward_kl and reverse_kl (both directions, for monitoring).
    """
    per_token = generalized_jsd(student_logits, teacher_logits, beta, temperature)
    loss = token_mean(per_token, mask)
    with torch.no_grad():
        log_s = _log_probs(student_logits, temperature)
        log_t = _log_probs(teacher_logits, temperature)
        forward = token_mean(kl_divergence(log_t, log_s), mask)
        reverse = token_mean(kl_divergence(log_s, log_t), mask)
    return loss, {"jsd": float(loss), "forward_kl": float(forward), "reverse_kl": float(reverse)}


def topk_tail_logprobs(
    student_logprobs: torch.Tensor, teacher_logprobs: torch.Tensor, k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Both distributions reduced to the student's top-k tokens plus one bucket for all the others.

    [..., V], [..., V] -> ([..., k+1], [..., k+1]), still normalised log-probs. The tail bucket is the
    logsumexp over the tokens outside the top k (exact, no 1 - sum cancellation). k >= V keeps every
    token and adds an empty (-inf) tail.
    """
    if k < 1:
        raise ValueError(f"top-k must be >= 1, got {k}")
    k = min(k, student_logprobs.shape[-1])
    top = student_logprobs.detach().topk(k, dim=-1).indices
    outside = torch.ones_like(student_logprobs, dtype=torch.bool).scatter(-1, top, False)

    def reduce(logprobs: torch.Tensor) -> torch.Tensor:
        tail = torch.logsumexp(logprobs.masked_fill(~outside, float("-inf")), dim=-1, keepdim=True)
        return torch.cat([logprobs.gather(-1, top), tail], dim=-1)

    return reduce(student_logprobs), reduce(teacher_logprobs)


def opd_advantages(
    student_logp: torch.Tensor,
    teacher_logp: torch.Tensor,
    mask: torch.Tensor,
    lam: float = 1.0,
    ref_logp: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-token advantage of on-policy distillation, [B,T] -> [B,T], detached, 0 where masked.

    lam = 1: A_t = -(logp_S(y_t) - logp_T(y_t)), the negative per-token reverse-KL estimate.
    G-OPD: A_t = lam logp_T - (lam - 1) logp_ref - logp_S; lam > 1 extrapolates the teacher's gain over the
    reference (needs ref_logp), lam = 0 pulls toward the reference alone.
    """
    valid = mask.bool()
    advantage = teacher_logp.detach() * lam - student_logp.detach()
    if lam != 1.0:
        if ref_logp is None:
            raise ValueError(f"opd_advantages with lam={lam} (not 1) needs ref_logp, the reference model's log-probs")
        advantage = advantage - (lam - 1.0) * ref_logp.detach()
    return torch.where(valid, advantage, 0.0)


REOPOLD_PHASES = ("explore", "refine")


def reopold_advantages(
    student_logp: torch.Tensor,
    teacher_logp: torch.Tensor,
    entropy: torch.Tensor,
    mask: torch.Tensor,
    lam: float = 0.3,
    top: float = 0.2,
    phase: str = "refine",
) -> tuple[torch.Tensor, torch.Tensor, dict[str, float]]:
    """REOPOLD (Ko et al. 2026): on-policy distillation as policy optimisation with a relaxed token reward.
    [B,T] student and teacher log-probs of the sampled tokens, the student's entropy at each position, mask
    -> (advantage [B,T] detached, 0 where not trained; keep [B,T] bool, the tokens that get a gradient; metrics).

    R_t = logp_T(y_t) - logp_S(y_t) (the token reward of on-policy distillation), floor = log(lam / (1 - lam)).
    explore: keep the tokens with R_t >= floor, advantage R_t (a token the teacher finds far less likely than
             the student does is left out rather than pushed down hard).
    refine:  advantage max(R_t, floor) (mixture-based clipping of the negative reward), kept only on the
             top `top` fraction of the batch's tokens by the student's entropy (entropy-based token sampling:
             where the student is unsure); ties at the threshold are kept.
    """
    if not 0.0 < lam < 1.0:
        raise ValueError(f"reopold lam must be in (0, 1), got {lam}")
    if not 0.0 < top <= 1.0:
        raise ValueError(f"reopold top (the share of tokens kept by entropy) must be in (0, 1], got {top}")
    if phase not in REOPOLD_PHASES:
        raise ValueError(f"reopold phase must be one of {REOPOLD_PHASES}, got {phase!r}")
    valid = mask.bool()
    reward = (teacher_logp - student_logp).detach()
    floor = math.log(lam / (1.0 - lam))
    if phase == "explore":
        keep = valid & (reward >= floor)
        advantage = reward
    else:
        advantage = reward.clamp(min=floor)
        keep = valid
        if top < 1.0 and valid.any():
            threshold = torch.quantile(entropy.detach()[valid].float(), 1.0 - top)
            keep = valid & (entropy.detach() >= threshold)
    n = valid.sum().clamp(min=1)
    metrics = {"reopold/kept": float(keep.sum() / n), "reopold/below_floor": float((valid & (reward < floor)).sum() / n),
               "reopold/reward_mean": float(torch.where(valid, reward, 0.0).sum() / n)}
    return torch.where(keep, advantage, 0.0), keep, metrics


def sampled_token_distill_loss(
    logp: torch.Tensor,
    teacher_logp: torch.Tensor,
    old_logp: torch.Tensor,
    mask: torch.Tensor,
    max_weight: float = 2.0,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Reverse-KL distillation on the sampled tokens: w_t sg(logp_t - logq_t) logp_t, [B,T] -> per-token [B,T].

    Its gradient (logp - logq) grad logp is, in expectation over the student's samples, the gradient of
    KL(student || teacher). w_t = min(exp(logp_t - old_t), max_weight), detached, corrects for samples drawn
    by an older policy (1 on-policy). Metrics: reverse_kl (mean sampled logp - logq), weight_mean.
    """
    valid = mask.bool()
    gap = torch.where(valid, logp.detach() - teacher_logp.detach(), 0.0)
    weight = torch.where(valid, logp.detach() - old_logp.detach(), 0.0).exp().clamp(max=max_weight)
    per_token = torch.where(valid, weight * gap * logp, 0.0)
    n = valid.sum().clamp(min=1)
    return per_token, {"reverse_kl": float(gap.sum() / n), "weight_mean": float(torch.where(valid, weight, 0.0).sum() / n)}


def rlsd_advantages(
    advantages: torch.Tensor,
    teacher_logp: torch.Tensor,
    logp: torch.Tensor,
    mask: torch.Tensor,
    lam: float = 1.0,
    eps: float = 0.2,
) -> torch.Tensor:
    """RLSD: the verifier's advantage A [B] keeps its sign; the self-teacher sets each token's magnitude.

    g_t = logp_T(y_t) - logp(y_t), w_t = clip(exp(sign(A) g_t), 1 - eps, 1 + eps),
    A_t = A ((1 - lam) + lam w_t). Returns [B,T], detached, 0 where masked. Since w_t > 0 the sign of A_t
    is the sign of A: a token the teacher likes more than the student does gets more credit in a
    correct answer and less blame in a wrong one.
    """
    if not 0.0 <= eps < 1.0:
        raise ValueError(f"rlsd eps must be in [0, 1), got {eps}")
    valid = mask.bool()
    gap = (teacher_logp - logp).detach()
    sign = advantages.detach().sign().unsqueeze(1)
    weight = (sign * gap).exp().clamp(1.0 - eps, 1.0 + eps)
    per_token = advantages.detach().unsqueeze(1) * ((1.0 - lam) + lam * weight)
    return torch.where(valid, per_token, 0.0)


def entropy_weights(teacher_entropy: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """SRPO: w_t = exp(-H_t(teacher)), normalised to mean 1 over the valid tokens. [B,T] -> [B,T], detached.

    A confident teacher (low entropy) is trusted more on that token. 0 where masked.
    """
    valid = mask.bool()
    raw = torch.where(valid, (-teacher_entropy.detach()).exp(), 0.0)
    return raw * valid.sum().clamp(min=1) / raw.sum().clamp(min=1e-12)


def srpo_route(correct: torch.Tensor, has_teacher: torch.Tensor) -> torch.Tensor:
    """SRPO routing, [B] bool, [B] bool -> [B] bool: True = distil from the self-teacher, False = GRPO.

    Failed samples that have a teacher context (a correct sibling or feedback) are distilled; correct
    samples, and failed ones with nothing to learn from, take the GRPO loss.
    """
    return ~correct.bool() & has_teacher.bool()
