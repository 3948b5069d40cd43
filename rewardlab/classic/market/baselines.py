"""Rule-based market makers for MarketMakingEnv, and `run_episodes` to score any policy on it.

A QuotingPolicy maps the env's unscaled state (`env.unwrapped.state()`, documented in env.py) to a pair of
quote offsets in ticks, `act(state) -> np.array([bid_offset, ask_offset], float32)`: that is the action of
rewardlab/MarketMakingContinuous-v0 as it is, and `env.unwrapped.quotes_to_action` turns it into the nearest
grid action of rewardlab/MarketMaking-v0. Baselines may read the state (inventory, time left, the model's
sigma and k) because they are yardsticks, not learners.

    FixedSpread(half_spread)              bid = ask = half_spread, whatever the inventory
    InventorySkew(half_spread, skew)      bid = half_spread + skew * q, ask = half_spread - skew * q
    AvellanedaStoikov(gamma)              reservation price and optimal spread (docs/market_making.md)

    records = run_episodes(AvellanedaStoikov(gamma=0.0005), "rewardlab/MarketMaking-v0", seeds=range(100, 120))
    risk_report(records)   # rewardlab.classic.market.risk
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import gymnasium as gym
import numpy as np


class QuotingPolicy:
    """Base class: subclasses implement `quotes(state) -> (bid_offset, ask_offset)` in ticks (>= 0)."""

    name = "quoting"

    def quotes(self, state: dict[str, Any]) -> tuple[float, float]:
        raise NotImplementedError

    def act(self, state: dict[str, Any]) -> np.ndarray:
        bid, ask = self.quotes(state)
        return np.array([max(bid, 0.0), max(ask, 0.0)], dtype=np.float32)


class FixedSpread(QuotingPolicy):
    """Quote `half_spread` ticks either side of the mid, ignoring inventory: the naive market maker."""

    name = "fixed_spread"

    def __init__(self, half_spread: float = 1.0):
        if not half_spread >= 0:
            raise ValueError(f"FixedSpread half_spread must be >= 0 ticks, got {half_spread!r}")
        self.half_spread = float(half_spread)

    def quotes(self, state: dict[str, Any]) -> tuple[float, float]:
        return self.half_spread, self.half_spread


class InventorySkew(QuotingPolicy):
    """Shift both quotes by `skew` ticks per lot of inventory q: a long book (q > 0) bids lower and offers
    closer, so it sells more than it buys and the inventory mean-reverts. Linear in q, time-independent."""

    name = "inventory_skew"

    def __init__(self, half_spread: float = 1.0, skew: float = 0.1):
        if not half_spread >= 0 or not skew >= 0:
            raise ValueError(f"InventorySkew needs half_spread >= 0 and skew >= 0 ticks, got {half_spread!r}, {skew!r}")
        self.half_spread, self.skew = float(half_spread), float(skew)

    def quotes(self, state: dict[str, Any]) -> tuple[float, float]:
        shift = self.skew * state["inventory"]
        return self.half_spread + shift, self.half_spread - shift


class AvellanedaStoikov(QuotingPolicy):
    """Avellaneda & Stoikov (2008), in ticks with tau = steps left:

        reservation r = s - q * gamma * sigma^2 * tau
        total spread  delta = gamma * sigma^2 * tau + (2 / gamma) * ln(1 + gamma / k)

    quotes r -+ delta / 2, i.e. bid offset q*gamma*sigma^2*tau + delta/2 and ask offset -q*gamma*sigma^2*tau + delta/2.
    sigma is the state's base sigma converted to ticks (or its EWMA estimate with use_vol_estimate=True) and
    k the state's k, unless given here. The model knows nothing of the competitors or the informed flow:
    each quote stays at least (1 / gamma) ln(1 + gamma / k) ~ 1 / k ticks from the reservation price (1 tick at
    the default k = 1, inside the competitors' 2), however tight the competition or toxic the flow.
    """

    name = "avellaneda_stoikov"

    def __init__(self, gamma: float = 0.0005, sigma: float | None = None, k: float | None = None, use_vol_estimate: bool = False):
        if not gamma > 0:
            raise ValueError(f"AvellanedaStoikov gamma (risk aversion, per tick) must be > 0, got {gamma!r}")
        self.gamma, self.sigma, self.k, self.use_vol_estimate = float(gamma), sigma, k, use_vol_estimate

    def quotes(self, state: dict[str, Any]) -> tuple[float, float]:
        sigma = self.sigma if self.sigma is not None else state["vol_estimate" if self.use_vol_estimate else "sigma"]
        sigma_ticks = sigma / state["tick_size"]
        k = self.k if self.k is not None else state["k"]
        risk = self.gamma * sigma_ticks ** 2 * state["steps_left"]
        half = 0.5 * (risk + (2.0 / self.gamma) * math.log1p(self.gamma / k))
        shift = state["inventory"] * risk
        return half + shift, half - shift


def run_episodes(policy: Any, env_id: str, seeds: Iterable[int], **env_kwargs: Any) -> list[dict[str, Any]]:
    """One episode per seed (reset(seed=s)) of `policy` on `env_id`, with per-step paths.

    `policy` is a QuotingPolicy (its act gets `env.unwrapped.state()`, its quotes are mapped onto the action
    space), or anything with `act(obs)` returning an action of the env (a trained rewardlab.classic policy).
    Each record: seed; pnl (final mark-to-market PnL) and episode_return (sum of rewards; equal to pnl when
    inventory_penalty is 0); pnl_path and inventory_path [T + 1] (from the reset); mid_path [T + 1];
    regime_path [T]; spread_capture, bid_fills, ask_fills, fill_rate, market_share, informed_fills,
    refused_fills at the end.
    """
    import rewardlab.classic.market  # noqa: F401  (registers the ids when this module is used alone)

    env = gym.make(env_id, **env_kwargs)
    market = env.unwrapped
    quoting = isinstance(policy, QuotingPolicy)
    records = []
    try:
        for seed in seeds:
            obs, info = env.reset(seed=int(seed))
            pnl, inventory, mid, regime, rewards = [info["pnl"]], [info["inventory"]], [info["mid"]], [], []
            done = False
            while not done:
                if quoting:
                    action = market.quotes_to_action(*policy.act(market.state()))
                else:
                    action = policy.act(obs)
                obs, reward, terminated, truncated, info = env.step(action)
                rewards.append(reward)
                pnl.append(info["pnl"])
                inventory.append(info["inventory"])
                mid.append(info["mid"])
                regime.append(info["regime"])
                done = terminated or truncated
            records.append({
                "seed": int(seed),
                "pnl": float(info["pnl"]),
                "episode_return": float(np.sum(rewards)),
                "pnl_path": np.array(pnl),
                "inventory_path": np.array(inventory),
                "mid_path": np.array(mid),
                "regime_path": np.array(regime),
                **{key: info[key] for key in ("spread_capture", "fill_rate", "market_share", "informed_fills", "refused_fills")},
                "bid_fills": info["total_bid_fills"],
                "ask_fills": info["total_ask_fills"],
            })
    finally:
        env.close()
    return records
