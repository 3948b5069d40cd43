"""The market-making environment, its baselines and risk metrics: facts that can be checked by hand and
that fail when the mechanics break (fills, adverse selection, the limit, the penalty, CVaR, the detector)."""

from __future__ import annotations

import math
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import rewardlab.classic.market  # noqa: F401  (registers the ids)
from rewardlab.classic.envs import make_env
from rewardlab.classic.market import (
    AvellanedaStoikov,
    FixedSpread,
    InventorySkew,
    MarketMakingEnv,
    RegimeShiftDetector,
    cvar,
    risk_report,
    run_episodes,
)
from rewardlab.classic.market.risk import risk_metrics

DISCRETE, CONTINUOUS = "rewardlab/MarketMaking-v0", "rewardlab/MarketMakingContinuous-v0"
SEEDS = range(5)


def play(env_id, seed, quotes=None, actions=None, **kwargs):
    """Run one episode with fixed quotes (bid, ask ticks) or a list of actions; return the step tuples."""
    env = gym.make(env_id, **kwargs)
    obs, info = env.reset(seed=seed)
    steps, t, done = [(obs, 0.0, info)], 0, False
    while not done:
        action = env.unwrapped.quotes_to_action(*quotes) if quotes is not None else actions[t]
        obs, reward, terminated, truncated, info = env.step(action)
        steps.append((obs, reward, info))
        done, t = terminated or truncated, t + 1
    return steps


def total_fills(steps):
    info = steps[-1][2]
    return info["total_bid_fills"] + info["total_ask_fills"]


@pytest.mark.parametrize("env_id", [DISCRETE, CONTINUOUS])
def test_gymnasium_check_env_and_make_env(env_id):
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*symmetric and normalized space")  # offsets are in ticks, [0, max]
        check_env(gym.make(env_id).unwrapped)
    env = make_env(env_id, {"episode_length": 7})  # the classic algorithms' path, through rewardlab.classic.envs
    env.reset(seed=0)
    done, n = False, 0
    while not done:
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        done, n = terminated or truncated, n + 1
    assert n == 7 and terminated and not truncated  # a fixed horizon is a true end: time left is observed


def test_same_seed_same_episode_and_other_seed_differs():
    rng = np.random.default_rng(0)
    actions = rng.integers(25, size=200).tolist()
    a, b, c = (play(DISCRETE, seed, actions=actions) for seed in (3, 3, 4))
    for (obs_a, r_a, info_a), (obs_b, r_b, info_b) in zip(a, b):
        assert np.array_equal(obs_a, obs_b) and r_a == r_b and info_a == info_b
    assert [s[2]["mid"] for s in a] != [s[2]["mid"] for s in c]


def test_action_grid_mapping():
    env = MarketMakingEnv(offset_grid=(0.5, 1.0, 2.0))
    assert env.action_space.n == 9
    assert env.action_to_quotes(5) == (1.0, 2.0)  # index 5 = bid grid[5 // 3], ask grid[5 % 3]
    assert all(env.quotes_to_action(*env.action_to_quotes(i)) == i for i in range(9))
    box = MarketMakingEnv(continuous=True, max_offset=4.0)
    assert box.action_to_quotes(np.array([-1.0, 9.0])) == (0.0, 4.0)


def test_far_quote_never_fills():
    # the competitors quote at most half_spread + noise + max_skew = 2 + 0.5 + 1 = 3.5 ticks from the mid
    for seed in SEEDS:
        for env_id, quotes in [(CONTINUOUS, (10.0, 10.0)), (DISCRETE, (5.0, 5.0))]:
            steps = play(env_id, seed, quotes=quotes, informed_fraction=0.5)
            assert total_fills(steps) == 0
            assert all(info["pnl"] == 0.0 and info["inventory"] == 0 for _, _, info in steps)


def test_quote_inside_competitors_fills_more_than_outside():
    inside = sum(total_fills(play(DISCRETE, seed, quotes=(0.5, 0.5))) for seed in SEEDS)
    outside = sum(total_fills(play(DISCRETE, seed, quotes=(3.0, 3.0))) for seed in SEEDS)
    assert inside > 10 * max(outside, 1)
    # with no competitor, the A * exp(-k * offset) intensity alone: fewer fills further out, but some
    far = sum(total_fills(play(DISCRETE, seed, quotes=(3.0, 3.0), n_competitors=0, inventory_limit=None)) for seed in SEEDS)
    near = sum(total_fills(play(DISCRETE, seed, quotes=(1.0, 1.0), n_competitors=0, inventory_limit=None)) for seed in SEEDS)
    assert 0 < far < near


def test_spread_capture_and_mark_to_market_accounting():
    steps = play(CONTINUOUS, 1, quotes=(1.5, 1.5), regime_shift_step=None)
    info = steps[-1][2]
    assert info["spread_capture"] == pytest.approx(1.5 * 0.01 * total_fills(steps))
    for _, _, info in steps:
        assert info["pnl"] == pytest.approx(info["cash"] + info["inventory"] * info["mid"], abs=1e-9)
    assert sum(r for _, r, _ in steps) == pytest.approx(steps[-1][2]["pnl"], abs=1e-9)


def test_informed_flow_makes_a_fixed_spread_lose():
    # Short episodes, many of them: the inventory noise of one episode grows like its length, as the
    # spread earned does, so 100 x 20 steps pin the mean down far better than 10 x 200 for the same cost.
    seeds, kwargs = range(100), {"regime_shift_step": None, "inventory_limit": None, "episode_length": 20}
    mean_pnl = {f: np.mean([r["pnl"] for r in run_episodes(FixedSpread(1.0), DISCRETE, seeds, informed_fraction=f, **kwargs)])
                for f in (0.0, 0.5, 1.0)}
    # per step, in ticks: f = 0 earns 1 tick on 2 * 2 * exp(-1) = 1.47 fills; f = 0.5 earns 0.74 and pays
    # 2 informed clients * E[(|dm| - 1 tick)+] = 2 * 0.79 = 1.58; f = 1 only pays, 4 * 0.79
    assert mean_pnl[0.0] > 0 > mean_pnl[0.5] > mean_pnl[1.0]


def test_inventory_limit_is_never_exceeded():
    rng = np.random.default_rng(1)
    for seed in SEEDS:
        steps = play(DISCRETE, seed, actions=rng.integers(25, size=200).tolist(), inventory_limit=3)
        assert max(abs(info["inventory"]) for _, _, info in steps) <= 3
    skewed = play(CONTINUOUS, 0, quotes=(0.0, 10.0), inventory_limit=3)  # only buys: runs into the limit
    assert skewed[-1][2]["inventory"] == 3 and skewed[-1][2]["refused_fills"] > 0


def test_inventory_penalty_changes_the_reward_by_exactly_minus_c_q_squared():
    c = 0.01
    actions = np.random.default_rng(2).integers(25, size=200).tolist()
    plain, penalised = play(DISCRETE, 5, actions=actions), play(DISCRETE, 5, actions=actions, inventory_penalty=c)
    assert any(info["inventory"] != 0 for _, _, info in plain)
    for (_, r0, info0), (_, r1, info1) in zip(plain[1:], penalised[1:]):
        assert info0 == info1  # the penalty shapes the reward only, never the market
        assert r1 - r0 == pytest.approx(-c * info0["inventory"] ** 2, abs=1e-12)


def test_scripted_regime_shift_changes_regime_at_that_step():
    steps = play(DISCRETE, 0, quotes=(2.0, 2.0), regime_shift_step=60)
    regimes = [info["regime"] for _, _, info in steps[1:]]  # the regime step t's move was drawn in
    assert regimes == [0] * 60 + [1] * 140


def test_cvar_and_risk_metrics_by_hand():
    values = [8, -4, 3, 0, 10, -10, 2, 7, 5, -1]  # sorted: -10, -4, -1, 0, 2, 3, 5, 7, 8, 10; mean 2
    assert cvar(values, 0.2) == pytest.approx(-7.0)  # (-10 - 4) / 2
    assert cvar(values, 0.25) == pytest.approx(-5.8)  # (-10 - 4 - 0.5 * 1) / 2.5
    assert cvar(values, 0.05) == pytest.approx(-10.0)  # alpha * n = 0.5 < 1: the worst value
    assert cvar(values, 1.0) == pytest.approx(2.0)
    report = risk_metrics([1.0, -1.0, 3.0], [[0, 1], [0, -2], [0, 1, 3]], [[0, 1], [0, -1], [0, 2, 3]])
    # per-step changes 1, -1, 2, 1: mean 0.75, sample variance (0.0625 + 3.0625 + 1.5625 + 0.0625) / 3
    assert report["sharpe_step"] == pytest.approx(0.75 / math.sqrt(4.75 / 3))
    assert report["mean_pnl"] == 1.0 and report["pnl_std"] == pytest.approx(2.0) and report["max_abs_inventory"] == 3
    assert report["cvar"] == -1.0 and report["sharpe_episode"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="alpha"):
        cvar(values, 0.0)


def mid_moves(seed, **kwargs):
    return np.diff([info["mid"] for _, _, info in play(DISCRETE, seed, quotes=(2.0, 2.0), **kwargs)])


def test_detector_flags_a_scripted_shift_and_stays_quiet_without_one():
    K = 40
    for seed in range(8):
        detector = RegimeShiftDetector()
        alarm = detector.run(mid_moves(seed, regime_shift_step=100))
        assert alarm is not None and 100 <= alarm <= 100 + K, (seed, alarm)
        assert detector.alarm and detector.alarm_kind is not None
    false_alarms = [RegimeShiftDetector().run(mid_moves(seed, regime_shift_step=None)) for seed in range(8)]
    assert false_alarms == [None] * 8


def test_detector_on_synthetic_series():
    rng = np.random.default_rng(0)
    calm = rng.normal(0, 1, 100)
    assert RegimeShiftDetector(std=1.0).run(calm) is None
    assert 100 <= RegimeShiftDetector(std=1.0).run(np.concatenate([calm, rng.normal(0, 3, 50)])) < 110
    mean_shift = RegimeShiftDetector(std=1.0)
    assert mean_shift.run(np.concatenate([calm, rng.normal(-1, 1, 100)])) is not None
    assert mean_shift.alarm_kind == "mean_down"


def test_avellaneda_stoikov_quotes_by_hand():
    state = {"inventory": 2, "steps_left": 100, "sigma": 0.02, "tick_size": 0.01, "k": 1.0}
    bid, ask = AvellanedaStoikov(gamma=0.001).quotes(state)
    risk = 0.001 * 2.0 ** 2 * 100  # gamma * sigma_ticks^2 * tau = 0.4 ticks
    half = 0.5 * (risk + 2000 * math.log(1.001))
    assert bid == pytest.approx(half + 2 * risk) and ask == pytest.approx(half - 2 * risk)
    assert InventorySkew(1.0, 0.1).quotes(state) == pytest.approx((1.2, 0.8))


@pytest.mark.parametrize("env_id", [DISCRETE, CONTINUOUS])
def test_each_baseline_runs(env_id):
    for policy in (AvellanedaStoikov(), FixedSpread(), InventorySkew()):
        records = run_episodes(policy, env_id, [11, 12], episode_length=50)
        assert [len(r["pnl_path"]) for r in records] == [51, 51]
        report = risk_report(records)
        assert report["episodes"] == 2 and math.isfinite(report["mean_pnl"])


@pytest.mark.parametrize("bad, match", [
    ({"informed_fraction": 1.5}, "informed_fraction"),
    ({"regime_shift_step": 500}, "regime_shift_step"),
    ({"regime_shift_step": "sometimes"}, "regime_shift_step"),
    ({"inventory_limit": 0}, "inventory_limit"),
    ({"offset_grid": []}, "offset_grid"),
])
def test_bad_options_name_the_option(bad, match):
    with pytest.raises(ValueError, match=match):
        gym.make(DISCRETE, **bad)
