"""A single-asset market-making environment: quote a bid and an ask around a drifting mid price, get
filled by client market orders when your quote is the best one, and carry the inventory risk.

Registered ids (importing rewardlab.classic.market registers them):

    rewardlab/MarketMaking-v0            Discrete(len(offset_grid)**2): a (bid offset, ask offset) pair from a grid
    rewardlab/MarketMakingContinuous-v0  Box([0, 0], [max_offset, max_offset]): the two offsets themselves

One step, in the order the code runs it (docs/market_making.md has the equations):

1. the action gives our bid and ask offsets from the mid, in ticks (price = mid -/+ offset * tick_size);
2. the next mid move is drawn, dm = drift + sigma * N(0, 1), with (drift, sigma) of the current regime;
3. client market orders arrive: uninformed buyers and sellers, Poisson(arrival_rate * (1 - informed_fraction))
   per side, each willing to trade up to an Exp(k) depth from the mid (so a quote at offset d is reachable
   at rate A * exp(-k * d), the Avellaneda-Stoikov intensity); informed clients, Poisson(2 * arrival_rate *
   informed_fraction), trade in the direction of dm and only where the best price beats the next mid;
4. every client trades one lot with the dealer quoting the best price on its side, us or one of the
   `n_competitors` rule-based dealers (a noisy fixed half-spread, skewed by their own inventory); a fill
   that would push our inventory past `inventory_limit` is refused and goes to the best competitor;
5. the mid moves, and the reward is the change of mark-to-market PnL (cash + inventory * mid) minus
   `inventory_penalty * inventory**2`.

The episode ends (terminated, not truncated) after `episode_length` steps: the time remaining is part of the
observation, so the last step is a true end of the finite-horizon problem, not a cut a value function
should bootstrap through.

All randomness comes from `self.np_random`, seeded by `reset(seed=...)`: the same seed and the same actions
give the same episode, bit for bit.
"""

from __future__ import annotations

import math
from typing import Any

import gymnasium as gym
import numpy as np

DEFAULT_GRID = (0.5, 1.0, 2.0, 3.0, 5.0)
"""Offsets in ticks of the discrete action grid (both sides): two inside the competitors' usual
2-tick half-spread, one at it, two outside it."""

OBS_BOUND = 10.0
"""Every observation entry is clipped to [-OBS_BOUND, OBS_BOUND]."""


def _require(condition: bool, name: str, message: str) -> None:
    if not condition:
        raise ValueError(f"MarketMakingEnv option {name}: {message}")


class MarketMakingEnv(gym.Env):
    """Market making against rule-based competing dealers, with informed flow and regime shifts.

    Units: prices (initial_mid, sigma, drift, PnL, rewards) in currency; quote offsets, `k`, and the
    competitors' spreads in ticks. Observation (float32, shape [4 + return_lags + 1], clipped to +-10):

        [0]                 inventory / inventory_scale (inventory_limit, or 20 without a limit)
        [1 : 1 + L]         the last L mid moves, newest first, in units of the base sigma
        [1 + L]             fraction of the episode left, (episode_length - t) / episode_length
        [2 + L], [3 + L]    the competitors' best bid and best ask offsets for the coming step, ticks / 10
        [4 + L]             an EWMA volatility estimate of the mid moves (decay 0.94), in units of the base sigma

    The baselines (baselines.py) read the unscaled numbers through `state()`.
    """

    metadata = {"render_modes": []}

    def __init__(
        self,
        continuous: bool = False,
        episode_length: int = 200,
        initial_mid: float = 100.0,
        tick_size: float = 0.01,
        sigma: float = 0.02,
        drift: float = 0.0,
        regime_shift_step: int | str | None = "random",
        shifted_sigma: float = 0.05,
        shifted_drift: float = 0.005,
        arrival_rate: float = 2.0,
        k: float = 1.0,
        informed_fraction: float = 0.1,
        n_competitors: int = 2,
        competitor_half_spread: float = 2.0,
        competitor_noise: float = 0.5,
        competitor_skew: float = 0.2,
        competitor_max_skew: float = 1.0,
        competitor_inventory_decay: float = 0.9,
        offset_grid: tuple[float, ...] | list[float] = DEFAULT_GRID,
        max_offset: float = 10.0,
        inventory_limit: int | None = 20,
        inventory_penalty: float = 0.0,
        return_lags: int = 3,
    ):
        """
        continuous: Box action [bid_offset, ask_offset] in ticks instead of the Discrete grid.
        episode_length: steps per episode.
        initial_mid, tick_size: the starting mid price and the tick, in currency.
        sigma, drift: the mid's per-step standard deviation and mean move before the regime shift.
        regime_shift_step: the step from which (shifted_sigma, +-shifted_drift) apply: an int for a scripted
            shift, "random" for a step drawn uniformly in [episode_length // 4, 3 * episode_length // 4)
            each episode, None for no shift. The drift's sign is drawn each episode (+ or - with
            probability 1/2), so a policy cannot learn the direction, only to react to it.
        arrival_rate: client market orders per side per step (A of A * exp(-k * offset)).
        k: decay of the fill intensity per tick of distance from the mid.
        informed_fraction: share of client orders that know the next mid move and trade with it.
        n_competitors: rule-based dealers quoting mid -+ (competitor_half_spread + U(-noise, noise)) ticks,
            each skewed by min(competitor_skew * its inventory, competitor_max_skew) ticks (a long dealer
            lowers both quotes); their inventory decays by competitor_inventory_decay per step.
        offset_grid: the Discrete action's offsets in ticks, the same grid for bid and ask; action
            i means bid offset grid[i // n], ask offset grid[i % n].
        max_offset: the Box action's upper bound in ticks (the lower bound is 0: quotes never cross the mid).
        inventory_limit: a fill that would take |inventory| above this is refused (None: no limit).
        inventory_penalty: c of the reward's -c * inventory**2 term (0: the reward is the PnL change).
        return_lags: how many past mid moves the observation shows.
        """
        super().__init__()
        _require(isinstance(episode_length, int) and episode_length >= 1, "episode_length", f"must be an int >= 1, got {episode_length!r}")
        for name, value in [("initial_mid", initial_mid), ("tick_size", tick_size), ("sigma", sigma),
                            ("shifted_sigma", shifted_sigma), ("k", k), ("max_offset", max_offset)]:
            _require(math.isfinite(value) and value > 0, name, f"must be a finite number > 0, got {value!r}")
        for name, value in [("drift", drift), ("shifted_drift", shifted_drift)]:
            _require(math.isfinite(value), name, f"must be a finite number, got {value!r}")
        for name, value in [("arrival_rate", arrival_rate), ("competitor_half_spread", competitor_half_spread),
                            ("competitor_noise", competitor_noise), ("competitor_skew", competitor_skew),
                            ("competitor_max_skew", competitor_max_skew), ("inventory_penalty", inventory_penalty)]:
            _require(math.isfinite(value) and value >= 0, name, f"must be a finite number >= 0, got {value!r}")
        _require(0 <= informed_fraction <= 1, "informed_fraction", f"must be in [0, 1] (a share of the client orders), got {informed_fraction!r}")
        _require(0 <= competitor_inventory_decay <= 1, "competitor_inventory_decay", f"must be in [0, 1], got {competitor_inventory_decay!r}")
        _require(isinstance(n_competitors, int) and n_competitors >= 0, "n_competitors", f"must be an int >= 0, got {n_competitors!r}")
        _require(isinstance(return_lags, int) and return_lags >= 1, "return_lags", f"must be an int >= 1, got {return_lags!r}")
        _require(inventory_limit is None or (isinstance(inventory_limit, int) and inventory_limit >= 1), "inventory_limit",
                 f"must be an int >= 1 or None (no limit), got {inventory_limit!r}")
        if isinstance(regime_shift_step, str):
            _require(regime_shift_step == "random", "regime_shift_step",
                     f"must be an int step, 'random' or None, got {regime_shift_step!r}")
        elif regime_shift_step is not None:
            _require(isinstance(regime_shift_step, int) and 0 <= regime_shift_step < episode_length, "regime_shift_step",
                     f"must be a step in [0, episode_length={episode_length}), 'random' or None, got {regime_shift_step!r}")
        grid = np.asarray(offset_grid, dtype=np.float64)
        _require(grid.ndim == 1 and len(grid) >= 1 and bool(np.all(np.isfinite(grid))) and bool(np.all(grid >= 0)),
                 "offset_grid", f"must be a non-empty list of offsets >= 0 in ticks, got {offset_grid!r}")

        self.continuous = bool(continuous)
        self.episode_length = episode_length
        self.initial_mid = float(initial_mid)
        self.tick_size = float(tick_size)
        self.sigma, self.drift = float(sigma), float(drift)
        self.regime_shift_step = regime_shift_step
        self.shifted_sigma, self.shifted_drift = float(shifted_sigma), float(shifted_drift)
        self.arrival_rate, self.k = float(arrival_rate), float(k)
        self.informed_fraction = float(informed_fraction)
        self.n_competitors = n_competitors
        self.competitor_half_spread, self.competitor_noise = float(competitor_half_spread), float(competitor_noise)
        self.competitor_skew, self.competitor_max_skew = float(competitor_skew), float(competitor_max_skew)
        self.competitor_inventory_decay = float(competitor_inventory_decay)
        self.offset_grid = grid
        self.max_offset = float(max_offset)
        self.inventory_limit = inventory_limit
        self.inventory_scale = float(inventory_limit or 20)
        self.inventory_penalty = float(inventory_penalty)
        self.return_lags = return_lags

        n = len(grid)
        self.action_space: gym.Space = (
            gym.spaces.Box(0.0, self.max_offset, (2,), np.float32) if self.continuous else gym.spaces.Discrete(n * n)
        )
        self.observation_space = gym.spaces.Box(-OBS_BOUND, OBS_BOUND, (5 + return_lags,), np.float32)
        self._started = False

    # --- actions ------------------------------------------------------------------------------------------

    def action_to_quotes(self, action: Any) -> tuple[float, float]:
        """(bid offset, ask offset) in ticks for an action of this env's action space."""
        if self.continuous:
            quotes = np.asarray(action, dtype=np.float64).reshape(-1)
            if quotes.shape != (2,) or not np.all(np.isfinite(quotes)):
                raise ValueError(f"MarketMakingContinuous action must be 2 finite numbers [bid_offset, ask_offset] in ticks, got {action!r}")
            quotes = np.clip(quotes, 0.0, self.max_offset)
            return float(quotes[0]), float(quotes[1])
        index = int(action)
        n = len(self.offset_grid)
        if not 0 <= index < n * n:
            raise ValueError(f"MarketMaking action must be an int in [0, {n * n}), got {action!r}")
        return float(self.offset_grid[index // n]), float(self.offset_grid[index % n])

    def quotes_to_action(self, bid_offset: float, ask_offset: float) -> Any:
        """The action closest to the given offsets (ticks): the clipped pair for the Box action, the
        nearest grid point on each side for the Discrete one. How the baselines play either env."""
        if self.continuous:
            return np.clip(np.array([bid_offset, ask_offset], dtype=np.float32), 0.0, self.max_offset)
        n = len(self.offset_grid)
        bid_index = int(np.argmin(np.abs(self.offset_grid - bid_offset)))
        ask_index = int(np.argmin(np.abs(self.offset_grid - ask_offset)))
        return bid_index * n + ask_index

    # --- episode ------------------------------------------------------------------------------------------

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        rng = self.np_random
        if self.regime_shift_step == "random":
            self._shift_step: int | None = int(rng.integers(self.episode_length // 4, max(3 * self.episode_length // 4, self.episode_length // 4 + 1)))
        else:
            self._shift_step = self.regime_shift_step
        self._shift_sign = 1.0 if rng.random() < 0.5 else -1.0
        self._t = 0
        self._mid = self.initial_mid
        self._cash = 0.0
        self._inventory = 0
        self._pnl = 0.0
        self._moves = np.zeros(self.return_lags)  # newest first, in price units
        self._vol2 = self.sigma ** 2  # EWMA of squared moves, started at the base variance
        self._competitor_inventory = [0.0] * self.n_competitors
        self._quote_competitors()
        self._spread_capture = 0.0
        self._bid_fills = self._ask_fills = 0
        self._quotes_hit = 0  # (step, side) pairs with at least one fill
        self._informed_fills = self._refused_fills = 0
        self._client_trades = 0
        self._started = True
        return self._obs(), self._info(0, 0)

    def _regime(self) -> int:
        return int(self._shift_step is not None and self._t >= self._shift_step)

    def _quote_competitors(self) -> None:
        """The competitors' bid and ask offsets (ticks) for the coming step: shown in the observation,
        used by the matching in the next `step`. Kept as Python floats: with a handful of dealers the
        per-client matching is faster on lists than on small arrays."""
        noise = self.np_random.uniform(-self.competitor_noise, self.competitor_noise, self.n_competitors).tolist()
        bids, asks = [], []
        for inventory, jitter in zip(self._competitor_inventory, noise):
            skew = min(max(self.competitor_skew * inventory, -self.competitor_max_skew), self.competitor_max_skew)
            half = self.competitor_half_spread + jitter
            bids.append(max(half + skew, 0.0))  # a long dealer bids lower ...
            asks.append(max(half - skew, 0.0))  # ... and offers closer, to sell
        self._competitor_best = {}  # side -> (best offset, indices of the dealers quoting it); side +1 = asks
        for side, quotes in ((1, asks), (-1, bids)):
            best = min(quotes, default=math.inf)
            self._competitor_best[side] = (best, [j for j, quote in enumerate(quotes) if quote == best])

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if not self._started:
            raise RuntimeError("MarketMakingEnv.step called before reset(); call env.reset(seed=...) first")
        if self._t >= self.episode_length:
            raise RuntimeError(f"MarketMakingEnv: the episode ended after {self.episode_length} steps; call reset() to start another")
        rng = self.np_random
        bid_offset, ask_offset = self.action_to_quotes(action)
        regime = self._regime()
        sigma, drift = (self.shifted_sigma, self._shift_sign * self.shifted_drift) if regime else (self.sigma, self.drift)
        move = drift + sigma * float(rng.standard_normal())  # the next mid move, known to the informed clients

        # Client orders, side +1 = the client buys (hits an ask), -1 = sells (hits a bid). Reach: how far from
        # the mid (ticks) a client trades. Uninformed: an Exp(k) depth, so P(reach >= d) = exp(-k d) and our
        # fill intensity at offset d is A exp(-k d). Informed: any price better than the next mid, i.e. an
        # offset below |move| / tick in the direction of the move (strictly: at the next mid it gains nothing).
        uninformed = self.arrival_rate * (1.0 - self.informed_fraction)
        n_buy, n_sell = int(rng.poisson(uninformed)), int(rng.poisson(uninformed))
        n_informed = int(rng.poisson(2.0 * self.arrival_rate * self.informed_fraction))
        n_clients = n_buy + n_sell + n_informed
        depths = rng.exponential(1.0 / self.k, n_buy + n_sell).tolist()
        informed_side, informed_reach = (1 if move > 0 else -1), abs(move) / self.tick_size
        clients = ([(1, depth, False) for depth in depths[:n_buy]] + [(-1, depth, False) for depth in depths[n_buy:]]
                   + [(informed_side, informed_reach, True)] * n_informed)
        order = rng.permutation(n_clients).tolist() if n_clients > 1 else range(n_clients)
        bid_fills = ask_fills = 0
        for i in order:
            side, reach, is_informed = clients[i]
            ours = ask_offset if side > 0 else bid_offset
            theirs, dealers = self._competitor_best[side]
            best = min(ours, theirs)
            if not (best < reach if is_informed else best <= reach):
                continue
            self._client_trades += 1
            we_win = ours == best and (ours < theirs or rng.integers(len(dealers) + 1) == 0)  # ties: a fair draw
            if we_win and self.inventory_limit is not None and abs(self._inventory - side) > self.inventory_limit:
                self._refused_fills += 1  # the client goes to the best competitor, if that one is within reach
                we_win = False
                if not (theirs < reach if is_informed else theirs <= reach):
                    continue
            if we_win:
                self._cash += side * (self._mid + side * ours * self.tick_size)
                self._inventory -= side
                self._spread_capture += ours * self.tick_size
                self._informed_fills += is_informed
                if side > 0:
                    ask_fills += 1
                else:
                    bid_fills += 1
            else:
                j = dealers[0] if len(dealers) == 1 else dealers[int(rng.integers(len(dealers)))]
                self._competitor_inventory[j] -= side

        self._mid += move
        self._t += 1
        self._moves[1:] = self._moves[:-1].copy()
        self._moves[0] = move
        self._vol2 = 0.94 * self._vol2 + 0.06 * move * move
        self._competitor_inventory = [q * self.competitor_inventory_decay for q in self._competitor_inventory]
        self._quote_competitors()
        self._bid_fills += bid_fills
        self._ask_fills += ask_fills
        self._quotes_hit += (bid_fills > 0) + (ask_fills > 0)

        pnl = self._cash + self._inventory * self._mid
        reward = pnl - self._pnl - self.inventory_penalty * self._inventory ** 2
        self._pnl = pnl
        terminated = self._t >= self.episode_length
        return self._obs(), float(reward), terminated, False, self._info(bid_fills, ask_fills, regime)

    # --- what the agent and the baselines see --------------------------------------------------------------

    def _obs(self) -> np.ndarray:
        lags = self.return_lags
        obs = np.empty(5 + lags, dtype=np.float64)
        obs[0] = self._inventory / self.inventory_scale
        obs[1:1 + lags] = self._moves / self.sigma
        obs[1 + lags] = (self.episode_length - self._t) / self.episode_length
        obs[2 + lags] = min(self._competitor_best[-1][0], self.max_offset) / 10.0  # max_offset without competitors
        obs[3 + lags] = min(self._competitor_best[1][0], self.max_offset) / 10.0
        obs[4 + lags] = math.sqrt(self._vol2) / self.sigma
        return np.clip(obs, -OBS_BOUND, OBS_BOUND).astype(np.float32)

    def _info(self, bid_fills: int, ask_fills: int, regime: int | None = None) -> dict[str, Any]:
        """Per-step bookkeeping; `regime` is the one the step's mid move was drawn in."""
        fills = self._bid_fills + self._ask_fills
        return {
            "pnl": self._pnl,  # mark-to-market: cash + inventory * mid
            "inventory": self._inventory,
            "cash": self._cash,
            "mid": self._mid,
            "spread_capture": self._spread_capture,  # cumulative sum of |fill price - mid| over our fills
            "bid_fills": bid_fills,  # this step: clients sold to us at our bid
            "ask_fills": ask_fills,  # this step: clients bought from us at our ask
            "total_bid_fills": self._bid_fills,
            "total_ask_fills": self._ask_fills,
            "fill_rate": self._quotes_hit / (2 * self._t) if self._t else 0.0,  # share of posted quotes hit at least once
            "market_share": fills / self._client_trades if self._client_trades else 0.0,
            "informed_fills": self._informed_fills,
            "refused_fills": self._refused_fills,  # fills the inventory limit turned away
            "regime": self._regime() if regime is None else regime,
            "step": self._t,
        }

    def state(self) -> dict[str, Any]:
        """The unscaled state and the model parameters, for baselines and diagnostics (a learning agent
        should see only the observation). Offsets in ticks, prices in currency; `sigma` is the base
        regime's (the current regime is hidden, as it is from the agent)."""
        if not self._started:
            raise RuntimeError("MarketMakingEnv.state called before reset(); call env.reset(seed=...) first")
        return {
            "mid": self._mid,
            "inventory": self._inventory,
            "cash": self._cash,
            "pnl": self._pnl,
            "step": self._t,
            "steps_left": self.episode_length - self._t,
            "episode_length": self.episode_length,
            "sigma": self.sigma,
            "vol_estimate": math.sqrt(self._vol2),
            "tick_size": self.tick_size,
            "arrival_rate": self.arrival_rate,
            "k": self.k,
            "inventory_limit": self.inventory_limit,
            "competitor_bid": self._competitor_best[-1][0] if self.n_competitors else None,
            "competitor_ask": self._competitor_best[1][0] if self.n_competitors else None,
        }
