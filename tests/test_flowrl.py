"""Hand-computed tests for FlowRL's trajectory-balance loss (docs/algorithms.md#flowrl).

Tolerance 1e-5 absolute, rtol 0.
"""

from __future__ import annotations

import math

import pytest
import torch

from rewardlab.algos import flowrl_importance_weights, flowrl_loss

ATOL = 1e-5


def close(actual, expected, atol: float = ATOL) -> None:
    torch.testing.assert_close(torch.as_tensor(actual, dtype=torch.float64), torch.as_tensor(expected, dtype=torch.float64), atol=atol, rtol=0)


def t(values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32)


def test_worked_example_from_algorithms_md():
    # logZ 0.3, mean logp -0.5, r_hat 0.2, mean ref -0.6, beta 15, w 1:
    # delta = 0.3 + (-0.5) - 15 * 0.2 - (-0.6) = -2.6; loss = 1 * 2.6^2 = 6.76
    log_z = t([0.3]).requires_grad_()
    logp = t([[-0.4, -0.6]]).requires_grad_()  # mean -0.5
    ref = t([[-0.5, -0.7]])  # mean -0.6
    loss, metrics = flowrl_loss(log_z, logp, ref, logp.detach(), t([0.2]), torch.ones(1, 2), beta=15.0)
    close(loss, 6.76)
    close(metrics["delta_mean"], -2.6)
    close(metrics["importance_weight_mean"], 1.0)
    loss.backward()
    # d loss / d logZ = 2 w delta = -5.2; d loss / d logp_t = 2 w delta / T = -2.6 for each of T = 2 tokens
    close(log_z.grad, [-5.2])
    close(logp.grad, [[-2.6, -2.6]])


def test_length_normalisation_ignores_masked_tokens_and_rows_are_averaged():
    # row 0: one valid token -1.0 (the -inf filler is masked), ref -2.0, logZ 0, r_hat 0 -> delta = -1 + 2 = 1
    # row 1: tokens -1, -3 (mean -2), ref -1, -1 (mean -1), logZ 0.5, r_hat 0.1, beta 10
    #        -> delta = 0.5 - 2 - 1 + 1 = -1.5
    # loss = (1^2 + 1.5^2) / 2 = 1.625
    logp = t([[-1.0, float("-inf")], [-1.0, -3.0]])
    ref = t([[-2.0, 0.0], [-1.0, -1.0]])
    mask = t([[1, 0], [1, 1]])
    loss, metrics = flowrl_loss(t([0.0, 0.5]), logp, ref, logp, t([0.0, 0.1]), mask, beta=10.0)
    close(loss, 1.625)
    close(metrics["delta_abs_mean"], 1.25)


@pytest.mark.parametrize(
    "importance, expected",
    [
        ("clamp", [10.0, math.exp(0.5)]),  # exp(log 20) = 20 -> clamped at 10; exp(0.5) stays
        ("clip", [1.2, 1.2]),  # both ratios above 1 + 0.2
        ("none", [1.0, 1.0]),
    ],
)
def test_importance_weight_options(importance, expected):
    # sum_t (logp - old): row 0 = log 20 (spread over two tokens), row 1 = 0.5; the masked token is ignored
    logp = t([[math.log(20) / 2, math.log(20) / 2], [0.5, 7.0]])
    old = torch.zeros(2, 2)
    mask = t([[1, 1], [1, 0]])
    close(flowrl_importance_weights(logp, old, mask, importance, weight_clamp=10.0, eps_low=0.2), expected)


def test_importance_weight_scales_the_squared_residual_and_is_not_differentiated():
    # delta = 0 + mean(logp) - 0 - 0 = 0.1; w = clip(exp(0.1 - 0), 0.8, 1.2) = exp(0.1) -> loss = exp(0.1) * 0.01
    logp = t([[0.1]]).requires_grad_()
    loss, _ = flowrl_loss(t([0.0]), logp, t([[0.0]]), t([[0.0]]), t([0.0]), t([[1]]), beta=1.0, importance="clip")
    close(loss, math.exp(0.1) * 0.01)
    loss.backward()
    # only delta is differentiated: 2 w delta = 2 exp(0.1) 0.1 (a differentiated w would add w delta^2)
    close(logp.grad, [[2 * math.exp(0.1) * 0.1]])


def test_clear_errors():
    with pytest.raises(ValueError, match="importance must be one of"):
        flowrl_importance_weights(t([[0.0]]), t([[0.0]]), t([[1]]), "ppo")
    with pytest.raises(ValueError, match="log_z and normalized_rewards must be"):
        flowrl_loss(t([0.0, 1.0]), t([[0.0]]), t([[0.0]]), t([[0.0]]), t([0.0]), t([[1]]))
