"""Hand-computed tests for distillation and self-distillation losses (docs/algorithms.md: distillation, self-distillation).

The KL directions are checked against a direct sum over a 3-token vocabulary and against torch's
F.kl_div, whose argument order is the classic trap. Tolerance 1e-5 absolute, rtol 0.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from rewardlab.algos import (
    distill_loss,
    entropy_weights,
    generalized_jsd,
    kl_divergence,
    opd_advantages,
    rlsd_advantages,
    sampled_token_distill_loss,
    srpo_route,
    topk_tail_logprobs,
)

ATOL = 1e-5
T_PROBS = [0.7, 0.2, 0.1]  # teacher
S_PROBS = [0.5, 0.3, 0.2]  # student


def close(actual, expected, atol: float = ATOL) -> None:
    torch.testing.assert_close(torch.as_tensor(actual, dtype=torch.float64), torch.as_tensor(expected, dtype=torch.float64), atol=atol, rtol=0)


def t(values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32)


def direct_kl(p: list[float], q: list[float]) -> float:
    return sum(pi * math.log(pi / qi) for pi, qi in zip(p, q))


def logits(probs: list[float]) -> torch.Tensor:
    return t(probs).log()  # log-probs are valid logits (softmax gives the probs back)


# ---------------------------------------------------------------- KL directions and the JSD


def test_forward_and_reverse_kl_against_a_direct_sum():
    forward = direct_kl(T_PROBS, S_PROBS)  # KL(T||S) = .7 ln(.7/.5) + .2 ln(.2/.3) + .1 ln(.1/.2) = 0.08512
    reverse = direct_kl(S_PROBS, T_PROBS)  # KL(S||T) = .5 ln(.5/.7) + .3 ln(.3/.2) + .2 ln(.2/.1) = 0.09203
    assert abs(forward - reverse) > 0.005  # the two directions differ, so a swap cannot pass
    close(generalized_jsd(logits(S_PROBS), logits(T_PROBS), beta=0.0), forward)
    close(generalized_jsd(logits(S_PROBS), logits(T_PROBS), beta=1.0), reverse)
    close(kl_divergence(logits(T_PROBS), logits(S_PROBS)), forward)


def test_torch_kl_div_with_log_target_is_the_forward_kl():
    # F.kl_div(input=log S, target=log T, log_target=True) = sum T (log T - log S) = KL(T||S), not KL(S||T)
    trap = F.kl_div(logits(S_PROBS), logits(T_PROBS), log_target=True, reduction="sum")
    close(trap, direct_kl(T_PROBS, S_PROBS))
    close(generalized_jsd(logits(S_PROBS), logits(T_PROBS), beta=0.0), trap)


def test_generalized_jsd_at_half_against_a_direct_sum():
    # M = 0.5 T + 0.5 S = [0.6, 0.25, 0.15]; JSD = 0.5 KL(T||M) + 0.5 KL(S||M)
    m = [0.6, 0.25, 0.15]
    expected = 0.5 * direct_kl(T_PROBS, m) + 0.5 * direct_kl(S_PROBS, m)
    close(generalized_jsd(logits(S_PROBS), logits(T_PROBS), beta=0.5), expected)
    # beta 0.9: M = 0.9 T + 0.1 S
    m = [0.9 * a + 0.1 * b for a, b in zip(T_PROBS, S_PROBS)]
    expected = 0.9 * direct_kl(T_PROBS, m) + 0.1 * direct_kl(S_PROBS, m)
    close(generalized_jsd(logits(S_PROBS), logits(T_PROBS), beta=0.9), expected)


def test_the_end_points_are_the_limits_of_the_mixture_formula():
    # JSD_beta / beta -> KL(T||S) as beta -> 0; JSD_beta / (1 - beta) -> KL(S||T) as beta -> 1 (error O(beta))
    small = 1e-4
    close(generalized_jsd(logits(S_PROBS), logits(T_PROBS), beta=small) / small, direct_kl(T_PROBS, S_PROBS), atol=1e-3)
    close(generalized_jsd(logits(S_PROBS), logits(T_PROBS), beta=1 - small) / small, direct_kl(S_PROBS, T_PROBS), atol=1e-3)


def test_gradients_flow_into_the_student_only_with_the_textbook_values():
    student = logits(S_PROBS).requires_grad_()
    teacher = logits(T_PROBS).requires_grad_()
    generalized_jsd(student, teacher, beta=0.0).backward()
    # d KL(T||S) / d student logits = S - T
    close(student.grad, [s - p for s, p in zip(S_PROBS, T_PROBS)])
    assert teacher.grad is None
    student.grad = None
    generalized_jsd(student, teacher, beta=1.0).backward()
    # d KL(S||T) / d z_v = S_v (log S_v - log T_v - KL(S||T))
    kl = direct_kl(S_PROBS, T_PROBS)
    close(student.grad, [s * (math.log(s / p) - kl) for s, p in zip(S_PROBS, T_PROBS)])


def test_temperature_divides_both_logits():
    # logits 2 ln p at temperature 2 are the distributions p again
    loss = generalized_jsd(2 * logits(S_PROBS), 2 * logits(T_PROBS), beta=0.0, temperature=2.0)
    close(loss, direct_kl(T_PROBS, S_PROBS))


def test_distill_loss_is_a_token_mean_over_valid_positions():
    # position 0: KL(T||S); position 1: identical distributions, 0; position 2: masked garbage
    student = torch.stack([logits(S_PROBS), logits(T_PROBS), t([50.0, -50.0, 0.0])]).unsqueeze(0)
    teacher = torch.stack([logits(T_PROBS), logits(T_PROBS), t([-50.0, 50.0, 0.0])]).unsqueeze(0)
    loss, metrics = distill_loss(student, teacher, t([[1, 1, 0]]), beta=0.0)
    close(loss, direct_kl(T_PROBS, S_PROBS) / 2)
    close(metrics["forward_kl"], direct_kl(T_PROBS, S_PROBS) / 2)
    close(metrics["reverse_kl"], direct_kl(S_PROBS, T_PROBS) / 2)


def test_topk_tail_buckets_keep_the_students_top_tokens():
    student = logits([0.4, 0.3, 0.2, 0.1])
    teacher = logits([0.1, 0.2, 0.3, 0.4])
    s, q = topk_tail_logprobs(student, teacher, k=2)
    # student's top 2 are tokens 0, 1; the tail holds tokens 2 + 3
    close(s.exp(), [0.4, 0.3, 0.3])
    close(q.exp(), [0.1, 0.2, 0.7])


def test_shape_and_range_errors():
    with pytest.raises(ValueError, match="share a tokenizer"):
        generalized_jsd(torch.zeros(3), torch.zeros(4))
    with pytest.raises(ValueError, match="beta must be in"):
        generalized_jsd(torch.zeros(3), torch.zeros(3), beta=1.5)


# ---------------------------------------------------------------- sampled-token forms


def test_on_policy_distillation_advantage_is_the_negative_reverse_kl_estimate():
    # A = -(logp_S - logp_T): -(-1.5 - (-1.0)) = 0.5; the masked token gives 0
    adv = opd_advantages(t([[-1.5, -0.2]]), t([[-1.0, -3.0]]), t([[1, 0]]))
    close(adv, [[0.5, 0.0]])


def test_gopd_reward_extrapolation_worked_example():
    # lambda 1.5, logpi* -1, logref -2, logpi -1.5: 1.5 (-1) - 0.5 (-2) - (-1.5) = 1.0
    adv = opd_advantages(t([[-1.5]]), t([[-1.0]]), t([[1]]), lam=1.5, ref_logp=t([[-2.0]]))
    close(adv, [[1.0]])
    with pytest.raises(ValueError, match="needs ref_logp"):
        opd_advantages(t([[-1.5]]), t([[-1.0]]), t([[1]]), lam=1.5)


def test_sampled_token_distill_loss_value_gradient_and_weight_cap():
    # token 0: logp -1, teacher -2, old -1.5 -> w = min(e^0.5, 2) = 1.64872, gap 1, loss w * 1 * (-1)
    # token 1: logp -1, teacher -0.5, old -2 -> w = min(e^1, 2) = 2, gap -0.5, loss 2 * (-0.5) * (-1) = 1
    logp = t([[-1.0, -1.0]]).requires_grad_()
    per_token, metrics = sampled_token_distill_loss(logp, t([[-2.0, -0.5]]), t([[-1.5, -2.0]]), t([[1, 1]]))
    close(per_token, [[-math.exp(0.5), 1.0]])
    close(metrics["reverse_kl"], (1.0 - 0.5) / 2)
    per_token.sum().backward()
    close(logp.grad, [[math.exp(0.5), -1.0]])  # d/dlogp = w * gap (gap and w are constants)


def test_rlsd_worked_examples():
    # lambda 1, eps 0.2: A 1.5, g 0.1 -> 1.5 clip(e^0.1) = 1.5 * 1.105171 = 1.657756
    #                    A -0.5, g -0.3 -> w = clip(e^{0.3}) = 1.2 -> -0.6
    adv = rlsd_advantages(t([1.5, -0.5]), t([[0.1], [-0.3]]), t([[0.0], [0.0]]), t([[1], [1]]))
    close(adv, [[1.5 * math.exp(0.1)], [-0.6]])
    # lambda 0.5 mixes: 1.5 (0.5 + 0.5 e^0.1); lambda 0 is plain GRPO
    close(rlsd_advantages(t([1.5]), t([[0.1]]), t([[0.0]]), t([[1]]), lam=0.5), [[1.5 * (0.5 + 0.5 * math.exp(0.1))]])
    close(rlsd_advantages(t([1.5]), t([[0.1]]), t([[0.0]]), t([[1]]), lam=0.0), [[1.5]])


def test_rlsd_never_flips_the_sign():
    torch.manual_seed(0)
    advantages = torch.randn(64)
    adv = rlsd_advantages(advantages, torch.randn(64, 5) * 5, torch.randn(64, 5) * 5, torch.ones(64, 5))
    assert bool((adv.sign() == advantages.sign().unsqueeze(1)).all())


def test_srpo_entropy_weights_and_routing():
    # H = 0, ln 2, (masked) -> exp(-H) = 1, 0.5 -> normalised to mean 1 over 2 valid tokens: 4/3, 2/3
    close(entropy_weights(t([[0.0, math.log(2), 9.0]]), t([[1, 1, 0]])), [[4 / 3, 2 / 3, 0.0]])
    routed = srpo_route(torch.tensor([True, False, False, True]), torch.tensor([True, True, False, False]))
    assert routed.tolist() == [False, True, False, False]
