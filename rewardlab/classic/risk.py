"""Risk-sensitive objectives for the on-policy algorithms (PPO, A2C), as adjustments of a rollout's rewards.

R is the undiscounted return of one episode (the sum of its rewards). Every option is off by default; on,
it changes the rewards the advantages and the critic's targets are computed from, never the environment
or the logged episode_return. The derivations are in docs/market_making.md#risk-sensitive-training.

    mean-variance  J = E[R] - lam * Var[R]                adds -lam * (R - mu)^2 to each episode's last reward,
                                                          mu the mean of the last `window` episode returns
    mean-CVaR      J = E[R] + beta * CVaR_alpha[R]        adds -(beta / alpha) * max(nu - R, 0) there instead,
                                                          nu = VaR_alpha of the same window (Rockafellar-Uryasev;
                                                          its gradient is Tamar et al. 2015's CVaR gradient)
    Lagrangian     max E[R]  s.t.  E[c] <= budget         rewards become (r_t - multiplier * c_t) / (1 + multiplier),
                                                          c_t = 1{|info[key]| > limit} after step t; then
                                                          multiplier <- max(0, multiplier + lr * (mean c - budget))

The Lagrangian's division by 1 + multiplier (as in Safety Gym's PPO-Lagrangian, Ray et al. 2019) does not
change which policy maximises r - multiplier * c for a given multiplier; it keeps the rewards, the critic's
targets and so the shared gradient-norm clip on the same scale however large the multiplier grows.

Why the episode adjustments give the right gradient. For a fixed mu, grad E[R - lam (R - mu)^2] =
grad E[R] - lam * grad E[(R - mu)^2], and at mu = E[R] the last term is grad Var[R] (d/dmu E[(R - mu)^2] = 0
there). For a fixed nu, grad E[-(1/alpha)(nu - R)^+] = (1/alpha) E[(R - nu) 1{R <= nu} grad log p(tau)], which
at nu = VaR_alpha is grad CVaR_alpha[R] (Tamar et al. 2015, eq. 6): only the episodes in the worst alpha tail
get a gradient, weighted by how far below the VaR they are. Both hold exactly for gamma = 1 and
gae_lambda = 1; with the usual gamma < 1 and GAE the adjustment is discounted like any late reward.

    risk = RolloutRisk.from_config(config, num_envs)       # None when every option is off
    envs = risk.wrap(envs)                                  # records info[key] when the Lagrangian is on
    rewards = risk.shape(rollout.rewards, rollout.episode_end, envs)
    run.log(step, {..., **risk.metrics})
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from gymnasium.vector import VectorEnv, VectorWrapper

# The config fields RolloutRisk reads (PPOConfig and A2CConfig declare them, with their docstrings).
FIELDS = ("mv_coef", "cvar_coef", "cvar_alpha", "risk_window", "lagrange_limit", "lagrange_key", "lagrange_budget",
          "lagrange_lr", "lagrange_init")


# --- the math, on plain arrays (tests/classic/test_market_risk.py checks each by hand) -------------------------


def value_at_risk(returns: Sequence[float], alpha: float) -> float:
    """VaR_alpha of the empirical distribution: the ceil(alpha * n)-th smallest return (1-based), the
    smallest nu with P(R <= nu) >= alpha. It is the maximiser of the Rockafellar-Uryasev form below."""
    x = np.sort(np.asarray(returns, dtype=np.float64))
    if x.size == 0:
        raise ValueError("value_at_risk needs at least one return")
    if not 0 < alpha <= 1:
        raise ValueError(f"value_at_risk alpha must be in (0, 1], got {alpha!r}")
    return float(x[max(math.ceil(alpha * x.size - 1e-9), 1) - 1])


def cvar_rockafellar_uryasev(returns: Sequence[float], alpha: float, nu: float) -> float:
    """nu - E[(nu - R)^+] / alpha on the empirical distribution. Its maximum over nu, reached at
    nu = value_at_risk(returns, alpha), is CVaR_alpha (= rewardlab.classic.market.cvar); any other nu gives less."""
    x = np.asarray(returns, dtype=np.float64)
    return float(nu - np.maximum(nu - x, 0.0).mean() / alpha)


def mean_variance_adjustment(returns: Sequence[float], mean: float, coef: float) -> np.ndarray:
    """-coef * (R - mean)^2 per episode: added to the episode's return, its policy gradient is that of
    E[R] - coef * Var[R] when `mean` is E[R]."""
    x = np.asarray(returns, dtype=np.float64)
    return -coef * (x - mean) ** 2


def cvar_adjustment(returns: Sequence[float], var: float, alpha: float, coef: float) -> np.ndarray:
    """-(coef / alpha) * max(var - R, 0) per episode: added to the episode's return, its policy gradient is
    coef times that of CVaR_alpha[R] when `var` is VaR_alpha. Zero for every episode at or above the VaR."""
    x = np.asarray(returns, dtype=np.float64)
    return -(coef / alpha) * np.maximum(var - x, 0.0)


def tamar_cvar_weights(returns: Sequence[float], alpha: float) -> np.ndarray:
    """The per-episode weights of Tamar et al. (2015)'s batch CVaR gradient,
    grad CVaR ~ sum_i w_i grad log p(tau_i), w_i = (R_i - VaR) 1{R_i <= VaR} / (alpha n), with the VaR
    estimated on the same batch. cvar_adjustment(returns, VaR, alpha, 1) / n gives the same numbers."""
    x = np.asarray(returns, dtype=np.float64)
    var = value_at_risk(x, alpha)
    return np.where(x <= var, x - var, 0.0) / (alpha * x.size)


def dual_ascent(multiplier: float, cost: float, budget: float, lr: float) -> float:
    """One projected gradient step of the Lagrange multiplier on the constraint E[c] <= budget:
    max(0, multiplier + lr * (cost - budget)). It grows while the constraint is violated, shrinks to 0 when slack."""
    return max(0.0, multiplier + lr * (cost - budget))


# --- the stateful part, used by the training loops --------------------------------------------------------------


@dataclass
class RiskOptions:
    """The risk-sensitive settings PPO and A2C share (all off by default); checked by check_options."""

    mv_coef: float = 0.0
    """Mean-variance: lambda of J = E[R] - lambda * Var[R], R the episode return; adds -lambda * (R - mu)^2 to each
    episode's last reward, mu the mean of the last risk_window returns (rewardlab/classic/risk.py). 0 = off."""
    cvar_coef: float = 0.0
    """Mean-CVaR: beta of J = E[R] + beta * CVaR_alpha[R]; adds -(beta / alpha) * max(VaR - R, 0) to each
    episode's last reward, VaR the alpha-quantile of the last risk_window returns (Tamar et al. 2015). 0 = off."""
    cvar_alpha: float = 0.05
    """The CVaR tail level alpha (used when cvar_coef > 0): the worst alpha fraction of episodes."""
    risk_window: int = 100
    """Finished episodes whose returns estimate the mean (mv_coef) and the VaR (cvar_coef)."""
    lagrange_limit: float | None = None
    """Lagrangian constraint: the soft limit on |info[lagrange_key]|; rewards become (r - multiplier * 1{|value| > limit})
    / (1 + multiplier) and the multiplier follows dual ascent on the fraction of steps over the limit. None = off."""
    lagrange_key: str = "inventory"
    """The info entry the Lagrangian constrains (its value after each step)."""
    lagrange_budget: float = 0.0
    """Allowed fraction of steps over lagrange_limit: the constraint is E[1{|value| > limit}] <= budget."""
    lagrange_lr: float = 0.01
    """Dual ascent step: multiplier <- max(0, multiplier + lagrange_lr * (fraction over the limit - budget)) per update."""
    lagrange_init: float = 0.0
    """The multiplier's starting value."""


class InfoRecorder(VectorWrapper):
    """Keeps `info[key]` of every step of a vector env: the value after the step, for an env whose episode
    ended the one of the episode's last state (`final_info`), not of the reset. `pop()` returns them [T, N]."""

    def __init__(self, env: VectorEnv, key: str):
        super().__init__(env)
        self.key = key
        self.values: list[np.ndarray] = []

    def step(self, actions):
        obs, rewards, terminated, truncated, info = self.env.step(actions)
        if self.key not in info:
            raise KeyError(f"lagrange_key {self.key!r} is not in the env's info (it has {sorted(k for k in info if not k.startswith('_'))})")
        value = np.asarray(info[self.key], dtype=np.float64).copy()
        ended = np.asarray(terminated) | np.asarray(truncated)
        if ended.any():
            final = info["final_info"]
            value[ended] = np.asarray(final[self.key], dtype=np.float64)[ended]
        self.values.append(value)
        return obs, rewards, terminated, truncated, info

    def pop(self) -> np.ndarray:
        values, self.values = np.stack(self.values), []
        return values


class RolloutRisk:
    """The risk options of one on-policy run (FIELDS above). `shape` turns a rollout's rewards [T, N] into
    the rewards to learn from and keeps the running estimates; `metrics` are the latest values to log.
    Checkpointed with the run (state_dict / load_state_dict), so a resumed run continues exactly."""

    def __init__(self, num_envs: int, mv_coef: float = 0.0, cvar_coef: float = 0.0, cvar_alpha: float = 0.05,
                 risk_window: int = 100, lagrange_limit: float | None = None, lagrange_key: str = "inventory",
                 lagrange_budget: float = 0.0, lagrange_lr: float = 0.01, lagrange_init: float = 0.0):
        self.mv_coef, self.cvar_coef, self.cvar_alpha = float(mv_coef), float(cvar_coef), float(cvar_alpha)
        self.lagrange_limit, self.lagrange_key = lagrange_limit, lagrange_key
        self.lagrange_budget, self.lagrange_lr = float(lagrange_budget), float(lagrange_lr)
        self.running = np.zeros(num_envs)  # the return so far of each env's current episode
        self.window: deque[float] = deque(maxlen=int(risk_window))  # the last returns of finished episodes
        self.multiplier = float(lagrange_init)
        self.metrics: dict[str, float] = {"lagrange_multiplier": self.multiplier} if lagrange_limit is not None else {}

    @classmethod
    def from_config(cls, config: Any, num_envs: int) -> RolloutRisk | None:
        """None when every option is off: the algorithm then runs exactly as without this module."""
        if config.mv_coef == 0 and config.cvar_coef == 0 and config.lagrange_limit is None:
            return None
        return cls(num_envs, **{name: getattr(config, name) for name in FIELDS})

    @property
    def episodic(self) -> bool:
        return self.mv_coef > 0 or self.cvar_coef > 0

    def wrap(self, envs: VectorEnv) -> VectorEnv:
        """`envs` with an InfoRecorder when the Lagrangian needs info[lagrange_key]; as it is otherwise."""
        return InfoRecorder(envs, self.lagrange_key) if self.lagrange_limit is not None else envs

    def shape(self, rewards: np.ndarray, episode_end: np.ndarray, envs: VectorEnv | None = None) -> np.ndarray:
        """The adjusted rewards [T, N] for one rollout (`envs` is the wrapped env the rollout stepped)."""
        shaped = np.array(rewards, dtype=np.float64, copy=True)
        if self.episodic:
            rows, cols, returns = [], [], []
            for t in range(len(rewards)):
                self.running += rewards[t]
                for n in np.flatnonzero(episode_end[t]):
                    rows.append(t)
                    cols.append(n)
                    returns.append(float(self.running[n]))
                    self.running[n] = 0.0
            if returns:
                self.window.extend(returns)
                window = np.asarray(self.window)
                adjustment = np.zeros(len(returns))
                if self.mv_coef > 0:
                    mean = float(window.mean())
                    adjustment += mean_variance_adjustment(returns, mean, self.mv_coef)
                    self.metrics["risk_return_mean"] = mean
                    self.metrics["risk_return_std"] = float(window.std())
                if self.cvar_coef > 0:
                    var = value_at_risk(window, self.cvar_alpha)
                    adjustment += cvar_adjustment(returns, var, self.cvar_alpha, self.cvar_coef)
                    self.metrics["risk_value_at_risk"] = var
                    self.metrics["risk_cvar"] = cvar_rockafellar_uryasev(window, self.cvar_alpha, var)
                self.metrics["risk_adjustment"] = float(adjustment.mean())
                np.add.at(shaped, (np.array(rows), np.array(cols)), adjustment)
        if self.lagrange_limit is not None:
            if not isinstance(envs, InfoRecorder):
                raise TypeError("RolloutRisk.shape needs the env returned by wrap() when lagrange_limit is set")
            costs = (np.abs(envs.pop()) > self.lagrange_limit).astype(np.float64)
            if costs.shape != shaped.shape:
                raise ValueError(f"recorded {costs.shape} constraint values for a rollout of {shaped.shape}")
            shaped = (shaped - self.multiplier * costs) / (1.0 + self.multiplier)
            cost = float(costs.mean())
            self.multiplier = dual_ascent(self.multiplier, cost, self.lagrange_budget, self.lagrange_lr)
            self.metrics["constraint_cost"] = cost
            self.metrics["lagrange_multiplier"] = self.multiplier
        return shaped

    def state_dict(self) -> dict[str, Any]:
        return {"running": self.running.tolist(), "window": list(self.window), "multiplier": self.multiplier,
                "metrics": dict(self.metrics)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.running[:] = state["running"]
        self.window.clear()
        self.window.extend(state["window"])
        self.multiplier = float(state["multiplier"])
        self.metrics = dict(state["metrics"])


def check_options(config: Any) -> None:
    """Validate the FIELDS of a config (PPOConfig, A2CConfig), naming the option like `require` does."""
    from rewardlab.classic.config import require

    require(config, "mv_coef", config.mv_coef >= 0, "must be >= 0 (0 = off)")
    require(config, "cvar_coef", config.cvar_coef >= 0, "must be >= 0 (0 = off)")
    require(config, "cvar_alpha", 0 < config.cvar_alpha <= 1, "must be in (0, 1] (the tail fraction, e.g. 0.05)")
    require(config, "risk_window", config.risk_window >= 1, "must be >= 1")
    require(config, "lagrange_limit", config.lagrange_limit is None or config.lagrange_limit >= 0, "must be >= 0 or None (off)")
    require(config, "lagrange_key", bool(config.lagrange_key), "must name an info entry, e.g. inventory")
    require(config, "lagrange_budget", 0 <= config.lagrange_budget <= 1, "must be in [0, 1] (a fraction of steps)")
    require(config, "lagrange_lr", config.lagrange_lr > 0, "must be > 0")
    require(config, "lagrange_init", config.lagrange_init >= 0, "must be >= 0")
