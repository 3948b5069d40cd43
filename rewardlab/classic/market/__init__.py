"""Market making on Gymnasium: an environment, three rule-based baselines and risk metrics.

Importing this package registers

    rewardlab/MarketMaking-v0            MarketMakingEnv with a Discrete grid of (bid, ask) offsets
    rewardlab/MarketMakingContinuous-v0  MarketMakingEnv(continuous=True): Box [bid_offset, ask_offset] in ticks

(rewardlab.classic.envs.make_env imports it for any "rewardlab/..." id, so the classic algorithms train on
them directly: `ppo.train(ppo.PPOConfig(env_id="rewardlab/MarketMaking-v0"))`). Keyword arguments of
gymnasium.make go to MarketMakingEnv (inventory_penalty, inventory_limit, regime_shift_step, ...).

    env.py        the environment (dynamics in its docstring, equations in docs/market_making.md)
    baselines.py  Avellaneda-Stoikov, fixed symmetric spread, inventory skew; run_episodes
    risk.py       mean/std PnL, CVaR, max inventory, Sharpe; RegimeShiftDetector (CUSUM)
"""

from __future__ import annotations

import gymnasium as gym

from .baselines import AvellanedaStoikov, FixedSpread, InventorySkew, QuotingPolicy, run_episodes
from .env import MarketMakingEnv
from .risk import RegimeShiftDetector, cvar, risk_report

ENV_IDS = ("rewardlab/MarketMaking-v0", "rewardlab/MarketMakingContinuous-v0")

if ENV_IDS[0] not in gym.registry:
    gym.register(ENV_IDS[0], entry_point="rewardlab.classic.market.env:MarketMakingEnv", disable_env_checker=True)
if ENV_IDS[1] not in gym.registry:
    gym.register(ENV_IDS[1], entry_point="rewardlab.classic.market.env:MarketMakingEnv",
                 kwargs={"continuous": True}, disable_env_checker=True)

__all__ = [
    "ENV_IDS",
    "AvellanedaStoikov",
    "FixedSpread",
    "InventorySkew",
    "MarketMakingEnv",
    "QuotingPolicy",
    "RegimeShiftDetector",
    "cvar",
    "risk_report",
    "run_episodes",
]
