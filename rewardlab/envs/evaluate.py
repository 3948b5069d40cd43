"""One evaluator for every agent: the policy and the baselines play the same episodes on the same seeds.

Episode i of an evaluation with seed S is reset with seed S * 100_000 + i (training uses seeds from
10^9 up, so evaluation episodes are never training episodes).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from ..monitor import progress
from . import make_text_env

EVAL_SEED_STRIDE = 100_000
TRAIN_SEED_BASE = 10**9


def eval_seeds(seed: int, n: int) -> list[int]:
    if not 0 <= seed < 10_000:
        raise ValueError(f"evaluation seed must be in [0, 10000), got {seed} (larger seeds would overlap training seeds)")
    if n > EVAL_SEED_STRIDE:
        raise ValueError(f"at most {EVAL_SEED_STRIDE} evaluation episodes per seed, got {n}")
    return [seed * EVAL_SEED_STRIDE + i for i in range(n)]


@dataclass
class EvalResult:
    """Mean of each per-episode metric (`metrics`), its standard error (`stderr`), and per-episode rows."""

    metrics: dict[str, float]
    stderr: dict[str, float]
    rows: list[dict[str, Any]] = field(default_factory=list)


def summarize_episodes(episodes: list[Any]) -> EvalResult:
    rows = [{"seed": ep.seed, **ep.summary(), "turns_text": [t.text for t in ep.turns]} for ep in episodes]
    keys = [k for k, v in rows[0].items() if isinstance(v, float)] if rows else []
    metrics, stderr = {}, {}
    for key in keys:
        values = [r[key] for r in rows]
        mean = sum(values) / len(values)
        var = sum((v - mean) ** 2 for v in values) / max(1, len(values) - 1)
        metrics[key], stderr[key] = mean, math.sqrt(var / len(values))
    return EvalResult(metrics, stderr, rows)


def evaluate_agent(
    env: str, env_options: dict[str, Any] | None, agent: Any, episodes: int, seed: int, batch_size: int = 500, desc: str = ""
) -> EvalResult:
    """Play `episodes` episodes (fresh seeds from `seed`) with `agent`, `batch_size` at a time in lockstep."""
    from ..rollout.episodes import run_episodes

    seeds = eval_seeds(seed, episodes)
    played = []
    bar = progress(len(seeds), desc or f"eval {env}", disable=None if len(seeds) > batch_size else True)
    for start in range(0, len(seeds), batch_size):
        chunk = seeds[start : start + batch_size]
        played += run_episodes(lambda: make_text_env(env, env_options), chunk, agent)
        bar.update(len(chunk))
    bar.close()
    return summarize_episodes(played)
