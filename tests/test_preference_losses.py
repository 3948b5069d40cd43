"""Hand-computed tests for the reward-model, DPO-family and KTO losses (docs/algorithms.md: reward model, preference losses).

softplus(x) = log(1 + e^x) and -logsigmoid(z) = softplus(-z) are used in the derivations.
Tolerance is 1e-5 absolute, rtol 0.
"""

from __future__ import annotations

import math

import pytest
import torch

from rewardlab.algos import (
    PREFERENCE_LOSS_TYPES,
    bradley_terry_loss,
    kto_loss,
    kto_reference_point,
    preference_loss,
)

ATOL = 1e-5


def assert_close(actual, expected, atol: float = ATOL) -> None:
    actual = torch.as_tensor(actual, dtype=torch.float64)
    expected = torch.as_tensor(expected, dtype=torch.float64)
    torch.testing.assert_close(actual, expected, atol=atol, rtol=0)


def t(values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32)


# ================================================================ Bradley-Terry


def test_bradley_terry_worked_example():
    # r_c - r_r = .8: -logsigmoid(.8) = log(1 + e^-.8) = log(1.4493290) = 0.3711007; acc 1
    loss, accuracy = bradley_terry_loss(t([1.2]), t([0.4]))
    assert_close(loss, 0.3711007)
    assert_close(accuracy, 1.0)


def test_bradley_terry_margin():
    # margin 1: -logsigmoid(.8 - 1) = log(1 + e^.2) = log(2.2214028) = 0.7981389
    loss, _ = bradley_terry_loss(t([1.2]), t([0.4]), margin=t([1.0]))
    assert_close(loss, 0.7981389)
    loss_float_margin, _ = bradley_terry_loss(t([1.2]), t([0.4]), margin=1.0)
    assert_close(loss_float_margin, 0.7981389)


def test_bradley_terry_tie_is_wrong_and_batch_mean():
    # pair 2 is a tie: loss log 2 = 0.6931472, counted wrong.
    # mean loss (0.3711007 + 0.6931472) / 2 = 0.5321239; accuracy 1/2
    loss, accuracy = bradley_terry_loss(t([1.2, 0.5]), t([0.4, 0.5]))
    assert_close(loss, 0.5321239)
    assert_close(accuracy, 0.5)
    assert not accuracy.requires_grad


def test_bradley_terry_centering():
    # eta .01 adds .01 * (1.2 + .4)^2 = .01 * 2.56 = .0256 -> 0.3711007 + 0.0256 = 0.3967007
    loss, _ = bradley_terry_loss(t([1.2]), t([0.4]), center_coef=0.01)
    assert_close(loss, 0.3967007)


def test_bradley_terry_gradient():
    # d/dr_c of -logsigmoid(r_c - r_r) = -sigmoid(-(r_c - r_r)) = -sigmoid(-.8) = -0.3100255
    chosen = t([1.2]).requires_grad_()
    rejected = t([0.4]).requires_grad_()
    bradley_terry_loss(chosen, rejected)[0].backward()
    assert_close(chosen.grad, [-0.3100255])
    assert_close(rejected.grad, [0.3100255])


# ================================================================ DPO family

# pi(w) -10, pi(l) -12, ref -11 for both: h = (-10 + 11) - (-12 + 11) = 2
DPO_ARGS = (t([-10.0]), t([-12.0]), t([-11.0]), t([-11.0]))


def test_dpo_sigmoid_worked_example():
    # -logsigmoid(.1 * 2) = log(1 + e^-.2) = 0.5981389; rewards .1 * (±1) = ±0.1
    losses, chosen_rewards, rejected_rewards = preference_loss(*DPO_ARGS, beta=0.1, loss_type="sigmoid")
    assert_close(losses, [0.5981389])
    assert_close(chosen_rewards, [0.1])
    assert_close(rejected_rewards, [-0.1])


def test_dpo_at_initialisation_is_log_two():
    # pi = ref -> h = 0 -> -logsigmoid(0) = ln 2 = 0.6931472
    logps = t([-5.0, -7.0])
    losses, _, _ = preference_loss(logps, logps + 1, logps, logps + 1, beta=0.1, loss_type="sigmoid")
    assert_close(losses, [math.log(2)] * 2)


def test_dpo_gradient():
    # d/dlogpi_w of -logsigmoid(beta h) = -beta sigmoid(-beta h) = -.1 * sigmoid(-.2) = -0.0450166
    chosen = t([-10.0]).requires_grad_()
    losses, chosen_rewards, _ = preference_loss(chosen, *DPO_ARGS[1:], beta=0.1, loss_type="sigmoid")
    losses.sum().backward()
    assert_close(chosen.grad, [-0.0450166])
    assert not chosen_rewards.requires_grad


def test_cdpo_label_smoothing():
    # eps .1: .9 * log(1 + e^-.2) + .1 * log(1 + e^.2) = .9 * 0.5981389 + .1 * 0.7981389 = 0.6181389
    losses, _, _ = preference_loss(*DPO_ARGS, beta=0.1, loss_type="cdpo", label_smoothing=0.1)
    assert_close(losses, [0.6181389])
    # "sigmoid" with label smoothing is the same loss
    smoothed, _, _ = preference_loss(*DPO_ARGS, beta=0.1, loss_type="sigmoid", label_smoothing=0.1)
    assert torch.equal(smoothed, losses)


def test_ipo_worked_example():
    # (h - 1/(2 tau))^2 = (2 - 1/(2 * .1))^2 = (2 - 5)^2 = 9 (summed log-probs as given)
    losses, chosen_rewards, _ = preference_loss(*DPO_ARGS, beta=0.1, loss_type="ipo")
    assert_close(losses, [9.0])
    assert_close(chosen_rewards, [0.1])


def test_simpo_worked_example():
    # average log-probs -8/10 = -.8 and -5.5/5 = -1.1, beta 2.5, gamma 1.375:
    # z = 2.5 * -.8 - 2.5 * -1.1 - 1.375 = -2 + 2.75 - 1.375 = -.625
    # -logsigmoid(-.625) = log(1 + e^.625) = log(2.8682459) = 1.0537007
    # rewards beta * avg logp = -2.0 and -2.75. The reference is ignored (None allowed).
    losses, chosen_rewards, rejected_rewards = preference_loss(
        t([-8.0]),
        t([-5.5]),
        None,
        None,
        beta=2.5,
        loss_type="simpo",
        chosen_lengths=torch.tensor([10]),
        rejected_lengths=torch.tensor([5]),
        gamma=1.375,
    )
    assert_close(losses, [1.0537007])
    assert_close(chosen_rewards, [-2.0])
    assert_close(rejected_rewards, [-2.75])
    # gamma defaults to 1.375
    default_gamma, _, _ = preference_loss(
        t([-8.0]),
        t([-5.5]),
        None,
        None,
        beta=2.5,
        loss_type="simpo",
        chosen_lengths=torch.tensor([10]),
        rejected_lengths=torch.tensor([5]),
    )
    assert torch.equal(default_gamma, losses)


def test_unknown_loss_type_lists_valid_ones():
    assert PREFERENCE_LOSS_TYPES == ("sigmoid", "ipo", "cdpo", "simpo")
    with pytest.raises(ValueError, match="sigmoid, ipo, cdpo, simpo"):
        preference_loss(*DPO_ARGS, beta=0.1, loss_type="hinge")


def test_preference_loss_rejects_misused_options():
    with pytest.raises(ValueError, match="chosen_lengths and rejected_lengths"):
        preference_loss(*DPO_ARGS, beta=2.5, loss_type="simpo")
    with pytest.raises(ValueError, match="unexpected options"):
        preference_loss(*DPO_ARGS, beta=0.1, loss_type="sigmoid", gamma=1.0)
    with pytest.raises(ValueError, match="ipo"):
        preference_loss(*DPO_ARGS, beta=0.1, loss_type="ipo", label_smoothing=0.1)
    with pytest.raises(ValueError, match="reference log-probs"):
        preference_loss(t([-1.0]), t([-2.0]), None, None, beta=0.1, loss_type="sigmoid")


# ================================================================ KTO


def test_kto_worked_example():
    # r = logpi - logref = 1.0, z0 .3, beta .1:
    # desirable:   1 - sigmoid(.1 * (1 - .3)) = 1 - sigmoid(.07) = 0.4825071
    # undesirable: 1 - sigmoid(.1 * (.3 - 1)) = sigmoid(.07) = 0.5174929, times weight 1.33 = 0.6882655
    policy = t([-4.0, -4.0]).requires_grad_()
    z0 = torch.tensor(0.3, requires_grad=True)
    losses, rewards = kto_loss(policy, t([-5.0, -5.0]), torch.tensor([True, False]), z0, beta=0.1)
    assert_close(losses, [0.4825071, 0.5174929])
    assert_close(rewards, [0.1, 0.1])
    weighted, _ = kto_loss(
        policy, t([-5.0, -5.0]), torch.tensor([True, False]), z0, beta=0.1, undesirable_weight=1.33
    )
    assert_close(weighted, [0.4825071, 0.6882655])
    # z0 is a baseline: no gradient flows into it
    losses.sum().backward()
    assert z0.grad is None
    # desirable: d/dlogpi (1 - sigmoid(beta (r - z0))) = -beta s (1 - s), s = sigmoid(.07) = 0.5174929
    #   -> -.1 * 0.5174929 * 0.4825071 = -0.0249694; undesirable: +0.0249694
    assert_close(policy.grad, [-0.0249694, 0.0249694])


def test_kto_reference_point():
    # mean([-1 + 1.5, -2 + 1.7]) = mean(.5, -.3) = .1; a negative mean clamps to 0
    policy = t([-1.0, -2.0]).requires_grad_()
    z0 = kto_reference_point(policy, t([-1.5, -1.7]))
    assert_close(z0, 0.1)
    assert not z0.requires_grad and z0.dim() == 0
    assert_close(kto_reference_point(t([-2.0, -2.0]), t([-1.0, -1.0])), 0.0)
