"""Multi-armed and contextual bandits as text environments.

Each episode draws new arm means (from the reset seed) and lasts `horizon` pulls. The observation
summarises the history: the pull count and mean reward of every arm, e.g.

    t12 1:5/0.60 2:0/- 3:4/0.75 4:2/0.50 5:1/1.00

(the history of pulls is only useful through these numbers, so each turn shows the current summary and
the conversation does not grow: `context = "last"`). With `show_index=True` each tried arm also shows its
UCB1 index, mean + sqrt(2 ln t / n), e.g. `3:4/0.75/1.86`: a small model cannot compute a square root of a
logarithm in the one token it has for it, and with the index shown it can learn what to do with it. The policy answers with a rationale and
`<arm>N</arm>`; by convention the rationale names the arm with the highest UCB1 index ("ucb 3"), which
is what the knowing-doing metric checks.

Every step's info carries what the metrics need: the expected regret of the pull, whether it was the
empirically best arm (greediness), the most frequent arm so far (frequency bias), and whether the
rationale and the action named a UCB1 arm (knowing vs doing).
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np

from .base import TextEnv


def ucb1_arms(counts: np.ndarray, means: np.ndarray, t: int) -> list[int]:
    """Arms (0-based) with the highest UCB1 index mean + sqrt(2 ln t / n); untried arms come first."""
    untried = np.flatnonzero(counts == 0)
    if len(untried):
        return untried.tolist()
    index = means + np.sqrt(2.0 * math.log(max(t, 1)) / counts)
    return np.flatnonzero(np.isclose(index, index.max(), rtol=0, atol=1e-12)).tolist()


def argmax_set(values: np.ndarray, where: np.ndarray) -> list[int]:
    """Indices where `values` is maximal among entries with `where` true ([] if none)."""
    if not where.any():
        return []
    masked = np.where(where, values, -np.inf)
    return np.flatnonzero(masked == masked.max()).tolist()


class BanditEnv(TextEnv):
    """K-armed bandit with Bernoulli or Gaussian rewards and a fixed horizon.

    Bernoulli arm means are drawn from U(0, 1); Gaussian means from N(0, 1), with reward noise
    N(0, noise_std^2). `means` fixes the instance instead (the same arms every episode).
    An unparseable or out-of-range arm pulls nothing (reward 0), costs `invalid_penalty` and the turn.
    """

    action_pattern = re.compile(r"<arm>\s*(-?\d+)\s*</arm>", re.IGNORECASE)
    action_template = "<arm>{}</arm>"
    context = "last"

    def __init__(
        self,
        arms: int = 5,
        horizon: int = 50,
        distribution: str = "bernoulli",
        noise_std: float = 1.0,
        means: list[float] | None = None,
        invalid_penalty: float = -1.0,
        context: str | None = None,
        show_index: bool = False,
    ):
        super().__init__(invalid_penalty=invalid_penalty, end_on_invalid=False, context=context)
        self.show_index = bool(show_index)
        if distribution not in ("bernoulli", "gaussian"):
            raise ValueError(f"distribution={distribution!r} is not valid; use bernoulli or gaussian")
        if arms < 2:
            raise ValueError(f"arms must be >= 2, got {arms}")
        if horizon < 1:
            raise ValueError(f"horizon must be >= 1, got {horizon}")
        if means is not None:
            if len(means) != arms:
                raise ValueError(f"means has {len(means)} entries but arms={arms}; give one mean per arm")
            if distribution == "bernoulli" and not all(0 <= m <= 1 for m in means):
                raise ValueError(f"Bernoulli means must lie in [0, 1], got {means}")
        self.arms, self.horizon, self.distribution = int(arms), int(horizon), distribution
        self.noise_std, self.fixed_means = float(noise_std), means
        self.num_contexts = 1
        self.mu = np.zeros((1, self.arms))  # [context, arm] true means
        self.context_id = 0
        self.t = 0

    # --- the instance and its statistics ------------------------------------------------------------

    def _draw_means(self, rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
        if self.fixed_means is not None:
            return np.broadcast_to(np.asarray(self.fixed_means, dtype=float), shape).copy()
        if self.distribution == "bernoulli":
            return rng.uniform(0.0, 1.0, size=shape)
        return rng.normal(0.0, 1.0, size=shape)

    def _draw_context(self) -> int:
        return 0

    def _pull(self, arm: int) -> float:
        mean = self.mu[self.context_id, arm]
        if self.distribution == "bernoulli":
            return float(self.np_random.random() < mean)
        return float(self.np_random.normal(mean, self.noise_std))

    @property
    def counts(self) -> np.ndarray:
        return self._counts[self.context_id]

    @property
    def means(self) -> np.ndarray:
        """Empirical mean reward per arm in the current context (0 where untried)."""
        return np.divide(self._sums[self.context_id], np.maximum(self.counts, 1))

    def _context_t(self) -> int:
        return int(self.counts.sum())

    def ucb_index(self) -> np.ndarray:
        """UCB1 index of each arm in the current context (inf for an untried arm), as `ucb1_arms` ranks them."""
        counts = self.counts
        bonus = np.sqrt(2.0 * math.log(max(self._context_t(), 1)) / np.maximum(counts, 1))
        return np.where(counts > 0, self.means + bonus, np.inf)

    def observation(self) -> str:
        index = self.ucb_index()
        arms = " ".join(
            (f"{a + 1}:{int(n)}/{m:.2f}" + (f"/{index[a]:.2f}" if self.show_index else "")) if n else f"{a + 1}:0/-"
            for a, (n, m) in enumerate(zip(self.counts, self.means))
        )
        return f"t{self.t} {self._context_text()}{arms}"

    def _context_text(self) -> str:
        return ""

    def _info(self, **extra: Any) -> dict[str, Any]:
        return {
            "t": self.t,
            "context": self.context_id,
            "counts": self.counts.copy(),
            "means": self.means.copy(),
            "legal": self.legal_actions(),
            **extra,
        }

    # --- Gymnasium API ------------------------------------------------------------------------------

    def _reset(self) -> tuple[str, dict[str, Any]]:
        self.mu = self._draw_means(self.np_random, (self.num_contexts, self.arms))
        self._counts = np.zeros((self.num_contexts, self.arms))
        self._sums = np.zeros((self.num_contexts, self.arms))
        self.t = 0
        self.context_id = self._draw_context()
        return self.observation(), self._info(instructions=self.instructions())

    def instructions(self) -> str:
        stats = "arm:pulls/mean/ucb" if self.show_index else "arm:pulls/mean"
        return f"bandit, {self.arms} arms, {self.horizon} pulls. {stats}. say why, then <arm>N</arm>"

    def legal_actions(self) -> list[int]:
        return list(range(1, self.arms + 1))

    def _turn_facts(self, arm: int | None, rationale: int | None) -> dict[str, Any]:
        """Metric flags of this turn, computed before the pull updates the statistics."""
        counts, means = self.counts, self.means
        mu = self.mu[self.context_id]
        tried = counts > 0
        greedy_set = argmax_set(means, tried)
        frequent_set = argmax_set(counts, tried)
        ucb = ucb1_arms(counts, means, self._context_t())
        worst = mu.max() - mu.min()
        return {
            "regret": float(mu.max() - mu[arm]) if arm is not None else float(worst),
            "best_arm": bool(arm is not None and mu[arm] == mu.max()),
            "greedy": (arm in greedy_set) if greedy_set and arm is not None else None,
            "frequent": (arm in frequent_set) if frequent_set and arm is not None else None,
            "knows": rationale is not None and (rationale - 1) in ucb,
            "does": arm is not None and arm in ucb,
            "context_before": self.context_id,
        }

    def step(self, action_text: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        if not self.done and isinstance(action_text, str):
            action = self.parse_action(action_text)
            arm = action - 1 if action is not None and 1 <= action <= self.arms else None
            self._facts = self._turn_facts(arm, self.parse_rationale(action_text))
        return super().step(action_text)

    def _advance(self, reward: float, arm: int | None) -> tuple[str, float, bool, bool, dict[str, Any]]:
        if arm is not None:
            self._counts[self.context_id, arm] += 1
            self._sums[self.context_id, arm] += reward
        self.t += 1
        facts = self._facts
        truncated = self.t >= self.horizon
        if not truncated:
            self.context_id = self._draw_context()
        return self.observation(), reward, False, truncated, self._info(**facts)

    def _step(self, action: int) -> tuple[str, float, bool, bool, dict[str, Any]]:
        return self._advance(self._pull(action - 1), action - 1)

    def _invalid_step(self) -> tuple[str, float, bool, bool, dict[str, Any]]:
        return self._advance(0.0, None)

    @staticmethod
    def summarize(step_infos: list[dict[str, Any]]) -> dict[str, float]:
        def share(key: str) -> float:
            values = [i[key] for i in step_infos if i.get(key) is not None]
            return sum(values) / len(values) if values else 0.0

        last = step_infos[-1]
        arms = len(last["counts"])
        # coverage over every context's arms: pulled (valid) arms / all (context, arm) pairs
        pulled = {(i["context_before"], i["action"]) for i in step_infos if i.get("invalid") is None}
        contexts = {i["context_before"] for i in step_infos}
        knows, does = share("knows"), share("does")
        return {
            "regret": float(sum(i["regret"] for i in step_infos)),
            "coverage": len(pulled) / (arms * max(1, len(contexts))),
            "greediness": share("greedy"),
            "frequency_bias": share("frequent"),
            "knowing": knows,
            "doing": does,
            "knowing_doing_gap": knows - does,
            "best_arm_rate": share("best_arm"),
            "invalid_rate": sum(i.get("invalid") is not None for i in step_infos) / max(1, len(step_infos)),
            "score": share("best_arm"),
        }


class ContextualBanditEnv(BanditEnv):
    """Contextual bandit: each pull comes with a context (one of `contexts` kinds, shown as "ctx C");
    the arm means depend on it (a separate mean per context and arm, drawn per episode). The observation
    shows the pull counts and means of the arms within the current context."""

    def __init__(self, contexts: int = 3, **kwargs: Any):
        super().__init__(**kwargs)
        if contexts < 1:
            raise ValueError(f"contexts must be >= 1, got {contexts}")
        self.num_contexts = int(contexts)

    def _draw_context(self) -> int:
        return int(self.np_random.integers(self.num_contexts))

    def _context_text(self) -> str:
        return f"ctx{self.context_id + 1} "

    def instructions(self) -> str:
        stats = "arm:pulls/mean/ucb" if self.show_index else "arm:pulls/mean"
        return (f"bandit, {self.arms} arms, {self.horizon} pulls, means depend on ctx. {stats} in this ctx. "
                "say why, then <arm>N</arm>")
