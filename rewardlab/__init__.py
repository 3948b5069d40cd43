"""rewardlab: reward-based learning for language models and classic RL agents.

    import rewardlab
    summary = rewardlab.train("grpo", {"model": "runs/sft/final", "max_steps": 100})
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__version__ = "0.1.0"


def train(method: str, config: Any = None, **overrides: Any) -> dict:
    """Train with `method` ("sft", "grpo", "dr_grpo", "dapo", "gspo", "rloo", "rm", "dpo", "ipo", "simpo", "kto").

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
