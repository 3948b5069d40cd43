"""rewardlab: reward-based learning for language models and classic RL agents.

    import rewardlab
    summary = rewardlab.train("grpo", {"model": "runs/sft/final", "max_steps": 100})
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__version__ = "0.1.0"


def train(method: str, config: Any = None, **overrides: Any) -> dict:
    """Train with `method`, one of:

        sft                             supervised fine-tuning (cold start)
        grpo, dr_grpo, dapo, gspo, rloo the online loop, outcome-level advantages
        reinforce_pp, ppo               the online loop, per-token advantages (ppo adds a critic)
        flowrl, sdpo, rlsd, srpo        the online loop with FlowRL or a self-teacher objective
        distill                         a teacher into a student (opd, gkd or sft loss)
        rm                              a Bradley-Terry reward model
        dpo, ipo, simpo, kto            preference optimisation

    The formulas are in docs/algorithms.md; the presets each name sets are in rewardlab/config.py
    (METHOD_PRESETS).

    config: a config dataclass, a dict of fields, a path to a YAML file, or None (defaults);
    keyword overrides win over it. Returns the run's summary (also in <run_dir>/summary.json).
    """
    from .config import CommonConfig, load_config
    from .trainers import TRAINERS

    if isinstance(config, CommonConfig):
        import dataclasses

        cfg = dataclasses.replace(config, **overrides) if overrides else config
        cfg.method = method
    elif isinstance(config, (str, Path)):
        cfg = load_config(method, config, overrides)
    else:
        cfg = load_config(method, None, {**(config or {}), **overrides})
    return TRAINERS[method](cfg)


__all__ = ["__version__", "train"]
