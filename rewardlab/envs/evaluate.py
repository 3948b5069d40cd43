"""One evaluator for every agent: the policy and the baselines play the same episodes on the same seeds.

Episode i of an evaluation with seed S (0 <= S < 10_000) is reset with seed S * 100_000 + i on the test
split and S * 100_000 + 50_000 + i on the tune split (i < 50_000). Training uses seeds from 10^9 up, so
evaluation episodes are never training episodes, tune and test never share a seed, and two evaluation
seeds never share an episode seed. (A seed fixes an episode's randomness, e.g. a bandit's arm means or a
tic-tac-toe opponent's choices; it does not keep positions apart: the same board can occur in training
and evaluation episodes.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from ..monitor import progress
from . import make_text_env

EVAL_SEED_STRIDE = 100_000
MAX_EVAL_SEED = 10_000  # evaluation seeds S * EVAL_SEED_STRIDE + i stay below TRAIN_SEED_BASE
TRAIN_SEED_BASE = 10**9
SPLIT_OFFSET = {"test": 0, "tune": EVAL_SEED_STRIDE // 2}


def eval_seeds(seed: int, n: int, split: str = "test") -> list[int]:
    """The episode seeds of an evaluation with seed `seed` on a split ("test" or "tune"); see the module doc."""
    if split not in SPLIT_OFFSET:
        raise ValueError(f"evaluation split must be 'tune' or 'test', got {split!r}")
    if not 0 <= seed < MAX_EVAL_SEED:
        raise ValueError(
            f"evaluation seed must be in [0, {MAX_EVAL_SEED}), got {seed}: episode seeds S * {EVAL_SEED_STRIDE} + i "
            "of larger seeds would overlap training seeds (10^9 and up)"
        )
    if not 0 <= n <= EVAL_SEED_STRIDE // 2:
        raise ValueError(f"at most {EVAL_SEED_STRIDE // 2} evaluation episodes per seed, got {n}")
    return [seed * EVAL_SEED_STRIDE + SPLIT_OFFSET[split] + i for i in range(n)]


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
    env: str, env_options: dict[str, Any] | None, agent: Any, episodes: int, seed: int, batch_size: int = 500, desc: str = "",
    split: str = "test",
) -> EvalResult:
    """Play `episodes` episodes (fresh seeds from `seed` on `split`) with `agent`, `batch_size` at a time in lockstep."""
    from ..rollout.episodes import run_episodes

    seeds = eval_seeds(seed, episodes, split)
    played = []
    bar = progress(len(seeds), desc or f"eval {env}", disable=None if len(seeds) > batch_size else True)
    for start in range(0, len(seeds), batch_size):
        chunk = seeds[start : start + batch_size]
        played += run_episodes(lambda: make_text_env(env, env_options), chunk, agent)
        bar.update(len(chunk))
    bar.close()
    return summarize_episodes(played)


# --- comparing agents: the tables `rewardlab eval --env` prints ------------------------------------------

BANDIT_COLUMNS = ("regret", "coverage", "greediness", "frequency_bias", "knowing", "doing", "knowing_doing_gap",
                  "invalid_rate")
TICTACTOE_COLUMNS = ("win", "draw", "loss", "non_loss", "invalid_rate", "missed_win", "missed_block")


def metric_columns(env: str, env_options: dict[str, Any] | None = None) -> tuple[str, ...]:
    from .bandits import BanditEnv
    from .tictactoe import TicTacToeEnv

    base = make_text_env(env, env_options).unwrapped
    if isinstance(base, BanditEnv):
        return BANDIT_COLUMNS
    if isinstance(base, TicTacToeEnv):
        return TICTACTOE_COLUMNS
    return ("return", "invalid_rate")


def policy_agent(model: str, device: str = "auto", max_new_tokens: int = 24, temperature: float = 0.0) -> Any:
    """A trained model (run's final/ directory, HF directory or .gguf) as an agent; greedy by default."""
    from ..models import load_policy
    from ..rollout import HFEngine, SamplingParams
    from ..rollout.episodes import PolicyAgent

    policy, tokenizer = load_policy(model, device=device)
    policy.eval()
    limit = getattr(policy.config, "max_position_embeddings", None)
    return PolicyAgent(HFEngine(policy, tokenizer), tokenizer, SamplingParams(max_new_tokens, temperature), limit)


def result_row(name: str, result: EvalResult, columns: tuple[str, ...]) -> dict[str, Any]:
    """`name` plus "mean ± standard error" per column (regret with 2 decimals, shares as percentages)."""
    row: dict[str, Any] = {"agent": name}
    for key in columns:
        mean, err = result.metrics.get(key, float("nan")), result.stderr.get(key, float("nan"))
        row[key] = f"{mean:.2f} ± {err:.2f}" if key in ("regret", "return") else f"{100 * mean:.1f}%"
    return row


DEFAULT_BASELINES = {"bandit": ("random", "epsilon_greedy(0.1)", "ucb1"), "tictactoe": ("random", "heuristic", "mcts(100)", "minimax")}


def compare(
    env: str,
    env_options: dict[str, Any] | None,
    model: str = "",
    baselines: list[str] | None = None,
    episodes: int = 1000,
    seed: int = 0,
    opponents: list[str] | None = None,
    device: str = "auto",
    max_new_tokens: int = 24,
    temperature: float = 0.0,
    split: str = "test",
) -> list[dict[str, Any]]:
    """Evaluate the model (if given) and baselines on the same fresh seeds of `split`; one table row per agent (and
    per tic-tac-toe opponent). Returns rows with the raw means as well ("<metric>_mean"). The model is
    greedy unless `temperature` > 0 (then sampling is seeded with `seed`, so a rerun gives the same table)."""
    import torch

    from .bandits import BanditEnv
    from .baselines import make_agent

    options = dict(env_options or {})
    options.pop("demo_follow", None)
    base = make_text_env(env, options).unwrapped
    if baselines is None:
        baselines = list(DEFAULT_BASELINES["bandit" if isinstance(base, BanditEnv) else "tictactoe"])
    agents: dict[str, Any] = {}
    if model:
        agents["policy"] = policy_agent(model, device, max_new_tokens, temperature)
    for name in baselines:
        agents[name] = make_agent(name, seed)
    columns = metric_columns(env, options)
    settings = [("", options)] if not opponents else [(o, {**options, "opponent": o}) for o in opponents]
    rows = []
    for opponent, opts in settings:
        for name, agent in agents.items():
            torch.manual_seed(seed)
            result = evaluate_agent(env, opts, agent, episodes, seed, desc=f"{name}" + (f" vs {opponent}" if opponent else ""),
                                    split=split)
            row = result_row(name, result, columns)
            if opponent:
                row = {"opponent": opponent, **row}
            row.update({f"{k}_mean": result.metrics[k] for k in columns if k in result.metrics})
            rows.append(row)
    return rows
