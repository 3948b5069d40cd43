"""Risk-sensitive options of the on-policy algorithms (rewardlab/classic/risk.py): the CVaR weighting, the
mean-variance adjustment and the Lagrange multiplier by hand; each option for a few hundred steps of PPO on
rewardlab/MarketMaking-v0, logging its metric; off or inert options leave PPO's numbers unchanged."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest

from rewardlab.classic import a2c, ppo
from rewardlab.classic.config import build_config
from rewardlab.classic.envs import make_vec_env
from rewardlab.classic.market import cvar
from rewardlab.classic.risk import (
    InfoRecorder,
    RolloutRisk,
    cvar_adjustment,
    cvar_rockafellar_uryasev,
    dual_ascent,
    mean_variance_adjustment,
    tamar_cvar_weights,
    value_at_risk,
)
from rewardlab.runs import list_checkpoints

MARKET = "rewardlab/MarketMaking-v0"
RETURNS = [7.0, -6.0, 3.0, -10.0, 0.0, 5.0, -2.0, 8.0, 1.0, 4.0]  # sorted: -10 -6 -2 0 1 3 4 5 7 8


def sigmoid(x):
    return 1.0 / (1.0 + math.exp(-x))


# --- CVaR ------------------------------------------------------------------------------------------------------


def test_value_at_risk_and_the_rockafellar_uryasev_form_by_hand():
    # alpha n = 2: VaR is the 2nd worst, CVaR the mean of the 2 worst
    assert value_at_risk(RETURNS, 0.2) == -6.0
    assert cvar_rockafellar_uryasev(RETURNS, 0.2, -6.0) == pytest.approx(-8.0)  # -6 - (4 / 10) / 0.2
    assert cvar(RETURNS, 0.2) == pytest.approx(-8.0)
    # any other nu gives less: nu = 0 -> 0 - (10 + 6 + 2) / 10 / 0.2 = -9; nu = -10 -> -10
    assert cvar_rockafellar_uryasev(RETURNS, 0.2, 0.0) == pytest.approx(-9.0)
    assert cvar_rockafellar_uryasev(RETURNS, 0.2, -10.0) == pytest.approx(-10.0)
    # alpha n = 2.5: VaR the 3rd worst; CVaR (-10 - 6 + 0.5 * -2) / 2.5 = -6.8, the RU form gives the same
    assert value_at_risk(RETURNS, 0.25) == -2.0
    assert cvar_rockafellar_uryasev(RETURNS, 0.25, -2.0) == pytest.approx(-6.8) == cvar(RETURNS, 0.25)
    assert value_at_risk(RETURNS, 0.01) == -10.0 and value_at_risk(RETURNS, 1.0) == 8.0


def test_cvar_adjustment_weights_only_the_tail_like_tamar():
    # VaR_0.2 = -6: only the episode at -10 is below it; -(1 / 0.2) * (-6 - -10) = -20
    adjustment = cvar_adjustment(RETURNS, -6.0, 0.2, 1.0)
    expected = np.zeros(10)
    expected[RETURNS.index(-10.0)] = -20.0
    np.testing.assert_allclose(adjustment, expected)
    np.testing.assert_allclose(cvar_adjustment(RETURNS, -6.0, 0.2, 0.5), expected / 2)
    # Tamar et al.'s batch weights (R - VaR) 1{R <= VaR} / (alpha n): -4 / 2 = -2 for the worst episode
    weights = tamar_cvar_weights(RETURNS, 0.2)
    assert weights[RETURNS.index(-10.0)] == pytest.approx(-2.0) and np.count_nonzero(weights) == 1
    np.testing.assert_allclose(adjustment / len(RETURNS), weights)


def test_cvar_adjustment_has_the_exact_cvar_gradient_on_a_bandit():
    """Action 1 (probability p = sigmoid(theta)) pays 0; action 0 pays -10 or +2, each with probability 1/2.
    P(-10) = (1 - p) / 2 < 1/2 <= P(R <= 0) near p = 1/2, so VaR_0.5 = 0 and CVaR_0.5 = -10 (1 - p) / 2 / 0.5
    = -10 (1 - p): dCVaR/dtheta = 10 p (1 - p) = 2.5 at theta = 0. The score-function estimator with the
    adjusted return has expectation sum_outcomes P * adjustment * dlog pi/dtheta, which must be the same."""
    theta, alpha = 0.0, 0.5
    p = sigmoid(theta)
    outcomes = [(-10.0, (1 - p) / 2, -p), (2.0, (1 - p) / 2, -p), (0.0, p, 1 - p)]  # (R, probability, dlog pi/dtheta)
    sample = [-10.0, 2.0, 0.0, 0.0]  # the distribution at p = 1/2, as 4 equally likely episodes
    nu = value_at_risk(sample, alpha)
    assert nu == 0.0 and cvar(sample, alpha) == pytest.approx(-10 * (1 - p))
    adjustments = cvar_adjustment([r for r, _, _ in outcomes], nu, alpha, 1.0)  # [-20, 0, 0]
    np.testing.assert_allclose(adjustments, [-20.0, 0.0, 0.0])
    expected_gradient = sum(prob * a * score for (_, prob, score), a in zip(outcomes, adjustments))
    analytic = 10 * p * (1 - p)
    assert expected_gradient == pytest.approx(analytic) == pytest.approx(2.5)
    h = 1e-6  # and the analytic form by finite differences of CVaR = -10 (1 - p)
    assert (-10 * (1 - sigmoid(theta + h)) + 10 * (1 - sigmoid(theta - h))) / (2 * h) == pytest.approx(analytic, rel=1e-6)


# --- mean-variance ----------------------------------------------------------------------------------------------


def test_mean_variance_adjustment_by_hand():
    returns = [1.0, 3.0, 5.0, 7.0]  # mean 4, population variance (9 + 1 + 1 + 9) / 4 = 5
    adjustment = mean_variance_adjustment(returns, 4.0, 0.5)
    np.testing.assert_allclose(adjustment, [-4.5, -0.5, -0.5, -4.5])
    assert np.mean(np.add(returns, adjustment)) == pytest.approx(4.0 - 0.5 * 5.0)  # E[R] - lambda Var[R]


def test_mean_variance_adjustment_has_the_exact_gradient_on_a_bandit():
    """Action 1 (probability p) pays 2, action 0 pays 0: E[R] = 2p, Var[R] = 4p(1 - p), so
    dJ/dtheta = (2 - 4 lam (1 - 2p)) p (1 - p) for J = E[R] - lam Var[R]; with mu = E[R] the adjusted return
    R - lam (R - mu)^2 in the score-function estimator has exactly that expectation."""
    theta, lam = 0.3, 0.5
    p = sigmoid(theta)
    outcomes = [(2.0, p, 1 - p), (0.0, 1 - p, -p)]
    adjusted = np.array([r for r, _, _ in outcomes]) + mean_variance_adjustment([r for r, _, _ in outcomes], 2 * p, lam)
    expected_gradient = sum(prob * a * score for (_, prob, score), a in zip(outcomes, adjusted))
    assert expected_gradient == pytest.approx((2 - 4 * lam * (1 - 2 * p)) * p * (1 - p))


# --- the Lagrangian ---------------------------------------------------------------------------------------------


def test_dual_ascent_by_hand():
    m = dual_ascent(0.0, cost=0.3, budget=0.1, lr=0.5)  # 0 + 0.5 * 0.2
    assert m == pytest.approx(0.1)
    m = dual_ascent(m, cost=0.0, budget=0.1, lr=0.5)  # 0.1 - 0.05
    assert m == pytest.approx(0.05)
    assert dual_ascent(m, cost=0.0, budget=0.1, lr=0.5) == 0.0  # projected onto >= 0


def test_lagrangian_shaping_and_multiplier_update_by_hand():
    envs = make_vec_env(MARKET, 2, {"episode_length": 3})
    risk = RolloutRisk(2, lagrange_limit=2.0, lagrange_budget=0.1, lagrange_lr=0.2, lagrange_init=1.0)
    recorder = risk.wrap(envs)
    assert isinstance(recorder, InfoRecorder) and risk.metrics == {"lagrange_multiplier": 1.0}
    recorder.values = [np.array([0.0, 3.0]), np.array([-3.0, 1.0])]  # |q| > 2: [[0, 1], [1, 0]]
    shaped = risk.shape(np.ones((2, 2)), np.zeros((2, 2), dtype=bool), recorder)
    np.testing.assert_allclose(shaped, [[0.5, 0.0], [0.0, 0.5]])  # (1 - 1 * c) / (1 + 1)
    assert risk.metrics["constraint_cost"] == 0.5
    assert risk.metrics["lagrange_multiplier"] == pytest.approx(1.0 + 0.2 * (0.5 - 0.1))
    envs.close()


def test_info_recorder_keeps_the_last_state_of_an_ended_episode_not_the_reset():
    envs = make_vec_env(MARKET, 2, {"episode_length": 3})
    recorder = InfoRecorder(envs, "inventory")
    recorder.reset(seed=3)
    inventories = []
    for _ in range(4):  # the 3rd step ends both episodes; the 4th is the next episode's first
        _, _, terminated, _, info = recorder.step(np.array([0, 0]))  # 0.5 ticks both sides: fills every step
        final = info["final_info"]["inventory"] if terminated.any() else info["inventory"]
        inventories.append(np.asarray(final, dtype=float))
        if terminated.any():
            assert np.all(info["inventory"] == 0)  # what the vector env reports: the reset's
    np.testing.assert_array_equal(recorder.pop(), np.stack(inventories))
    assert recorder.values == []
    envs.close()


def test_rollout_risk_episode_returns_span_rollouts():
    """Env 0 ends an episode at t = 1 of the first rollout; env 1 at t = 0 of the second, with a return
    that began in the first. mean-variance (lam 0.1) uses the mean of the window of finished returns."""
    risk = RolloutRisk(2, mv_coef=0.1, risk_window=2)
    rewards = np.array([[1.0, 2.0], [3.0, 2.0]])
    ends = np.array([[False, False], [True, False]])
    shaped = risk.shape(rewards, ends)  # env 0: R = 4, window [4], mean 4 -> adjustment 0
    np.testing.assert_allclose(shaped, rewards)
    assert risk.metrics["risk_return_mean"] == 4.0
    shaped = risk.shape(np.array([[1.0, 6.0]]), np.array([[False, True]]))  # env 1: R = 2 + 2 + 6 = 10
    # window [4, 10], mean 7: env 1's last reward gets -0.1 * (10 - 7)^2 = -0.9
    np.testing.assert_allclose(shaped, [[1.0, 6.0 - 0.9]])
    assert risk.metrics["risk_return_mean"] == 7.0 and risk.metrics["risk_return_std"] == 3.0
    state = risk.state_dict()
    assert state["running"] == [1.0, 0.0] and state["window"] == [4.0, 10.0]
    other = RolloutRisk(2, mv_coef=0.1, risk_window=2)
    other.load_state_dict(json.loads(json.dumps(state)))
    assert other.state_dict() == state


def test_rollout_risk_cvar_on_a_window():
    risk = RolloutRisk(len(RETURNS), cvar_coef=1.0, cvar_alpha=0.2)
    shaped = risk.shape(np.array([RETURNS]), np.ones((1, len(RETURNS)), dtype=bool))
    expected = np.array(RETURNS)
    expected[RETURNS.index(-10.0)] -= 20.0
    np.testing.assert_allclose(shaped[0], expected)
    assert risk.metrics["risk_value_at_risk"] == -6.0 and risk.metrics["risk_cvar"] == pytest.approx(-8.0)


# --- the options in PPO -----------------------------------------------------------------------------------------


def market_config(quiet, **overrides):
    fields = {"env_id": MARKET, "total_steps": 256, "num_envs": 2, "num_steps": 64, "log_every": 128,
              "env_kwargs": {"episode_length": 50}, **quiet}
    return ppo.PPOConfig(**{**fields, **overrides})


@pytest.mark.parametrize("options, metrics", [
    ({"mv_coef": 0.05}, ("risk_return_mean", "risk_return_std", "risk_adjustment")),
    ({"cvar_coef": 1.0, "cvar_alpha": 0.25}, ("risk_value_at_risk", "risk_cvar", "risk_adjustment")),
    ({"lagrange_limit": 3.0, "lagrange_lr": 0.1}, ("lagrange_multiplier", "constraint_cost")),
])
def test_each_option_trains_ppo_on_the_market_and_logs_its_metric(quiet, options, metrics):
    _, history = ppo.train(market_config(quiet, total_steps=128, **options))  # one update, 2 episodes
    last = history[-1]
    assert all(key in last and math.isfinite(last[key]) for key in metrics), last
    if "lagrange_limit" in options:
        assert last["lagrange_multiplier"] > 0  # a random policy's inventory goes past 3 lots


def test_a2c_takes_the_same_options(quiet):
    config = a2c.A2CConfig(env_id=MARKET, total_steps=400, log_every=200, env_kwargs={"episode_length": 50},
                           mv_coef=0.05, lagrange_limit=3.0, lagrange_lr=0.1, **quiet)
    _, history = a2c.train(config)
    assert {"risk_return_mean", "lagrange_multiplier", "constraint_cost"} <= set(history[-1])


def test_an_inert_option_leaves_ppo_unchanged_and_the_penalty_comes_through_env_kwargs(quiet):
    """A limit no inventory reaches: no cost, the multiplier stays 0, the rewards pass unchanged, and the
    recorder does not disturb the rollout; every logged number equals the risk-neutral run's. The inventory
    penalty is the env's, reached through env_kwargs: the same episodes score lower by sum c q^2."""
    _, neutral = ppo.train(market_config(quiet, name="neutral"))
    _, inert = ppo.train(market_config(quiet, name="inert", lagrange_limit=1e9))
    assert RolloutRisk.from_config(market_config(quiet), 2) is None
    for a, b in zip(neutral, inert, strict=True):
        assert {k: v for k, v in a.items() if k not in ("time", "sps")} == {
            k: v for k, v in b.items() if k not in ("time", "sps", "lagrange_multiplier", "constraint_cost")}
        assert b["lagrange_multiplier"] == 0.0 and b["constraint_cost"] == 0.0
    _, penalised = ppo.train(market_config(quiet, name="penalised", env_kwargs={"episode_length": 50, "inventory_penalty": 0.01}))
    assert penalised[0]["episode_return"] < neutral[0]["episode_return"]  # the same first episodes, minus c q^2


def test_resume_with_every_risk_option_repeats_the_run(quiet):
    options = {"mv_coef": 0.01, "cvar_coef": 0.5, "cvar_alpha": 0.25, "lagrange_limit": 3.0, "lagrange_lr": 0.1,
               "total_steps": 384, "checkpoint_every": 128, "keep_checkpoints": 0, "name": "resume"}
    _, history = ppo.train(market_config(quiet, **options))
    run_dir = market_config(quiet, **options).run_dir
    checkpoints = list_checkpoints(run_dir)
    for later in checkpoints[1:]:
        shutil.rmtree(later)
    shutil.rmtree(run_dir / "final")
    _, resumed = ppo.train(market_config(quiet, resume=True, **options))
    drop = ("time", "sps")
    assert [{k: v for k, v in row.items() if k not in drop} for row in resumed] == [
        {k: v for k, v in row.items() if k not in drop} for row in history]


@pytest.mark.parametrize("override, match", [
    ("mv_coef=-1", "ppo.mv_coef must be >= 0"),
    ("cvar_alpha=0", r"ppo.cvar_alpha must be in \(0, 1\]"),
    ("lagrange_limit=-2", "ppo.lagrange_limit must be >= 0 or None"),
    ("lagrange_budget=1.5", r"ppo.lagrange_budget must be in \[0, 1\]"),
    ("risk_window=0", "ppo.risk_window must be >= 1"),
])
def test_bad_risk_options_name_the_option(override, match):
    with pytest.raises(ValueError, match=match):
        build_config(ppo.PPOConfig, [override])
    config = build_config(ppo.PPOConfig, ["lagrange_limit=5", "mv_coef=0.1", "cvar_coef=0.5"])
    assert (config.lagrange_limit, config.mv_coef, config.cvar_coef) == (5.0, 0.1, 0.5)
    assert build_config(ppo.PPOConfig, ["lagrange_limit=none"]).lagrange_limit is None
