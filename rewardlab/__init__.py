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
        distill, reopold                a teacher into a student (opd, reopold, gkd or sft loss)
        rs                              rejection-sampling fine-tuning (sample n, keep the best, SFT)
        rm, prm                         a Bradley-Terry reward model; a process reward model (per step)
        dpo, ipo, simpo, kto            preference optimisation

    The formulas are in docs/algorithms.md; the presets each name sets are in rewardlab/config.py
    (METHOD_PRESETS).

    config: a config dataclass, a dict of fields, a path to a YAML file, or None (defaults);
    keyword overrides win over it. Returns the run's summary (also in <run_dir>/summary.json).

    dataset / eval_dataset (in the config or as keywords): a path to a .jsonl/.json/.parquet file, or the
    data itself, as TRL takes it: a datasets.Dataset, a DatasetDict (its "train" split for dataset, "test"
    or else "validation" for eval_dataset), an IterableDataset (read once, at the start) or a list of
    dicts. The run's config.yaml then records a description with the row count, the columns and a
    fingerprint of the rows; a resumed run checks that the fingerprint matches.
    """
    import dataclasses

    from .config import CommonConfig, load_config
    from .data.sources import as_source
    from .trainers import TRAINERS

    overrides = _data_as_sources(overrides, as_source)
    if isinstance(config, CommonConfig):
        data = {k: as_source(getattr(config, k), k) for k in _DATA_KEYS if k not in overrides}
        changed = {k: v for k, v in data.items() if v is not getattr(config, k)}
        cfg = dataclasses.replace(config, **changed, **overrides) if overrides or changed else config
        cfg.method = method
    elif isinstance(config, (str, Path)):
        cfg = load_config(method, config, overrides)
    else:
        cfg = load_config(method, None, {**_data_as_sources(dict(config or {}), as_source), **overrides})
    return TRAINERS[method](cfg)


_DATA_KEYS = ("dataset", "eval_dataset")


def _data_as_sources(settings: dict, as_source) -> dict:
    """The settings with dataset / eval_dataset (flat, "data.dataset", or under a "data" section) given as
    Dataset objects or lists turned into the text-plus-rows a config field holds (rewardlab/data/sources.py)."""
    out = {}
    for key, value in settings.items():
        name = key.removeprefix("data.") if isinstance(key, str) else key
        if name in _DATA_KEYS:
            value = as_source(value, name)
        elif key == "data" and isinstance(value, dict):
            value = {k: as_source(v, k) if k in _DATA_KEYS else v for k, v in value.items()}
        out[key] = value
    return out


__all__ = ["__version__", "train"]
