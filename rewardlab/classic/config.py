"""Flat, typed configs for the classic algorithms and the `key=value` overrides that build them.

Every algorithm has one dataclass (`PPOConfig`, `DQNConfig`, ...) in its own file. They all start with
the same run fields below (which env, how long, where the run directory goes), then list their own
hyperparameters, each with a docstring. Nothing is nested: `config.learning_rate`, never
`config.optim.lr`.

    cfg = build_config(PPOConfig, ["env_id=Acrobot-v1", "total_steps=200_000"])
    cfg = build_config(PPOConfig, ["learnin_rate=1e-3"])
    # ConfigError: command line: unknown config key 'learnin_rate' for PPOConfig. Did you mean: learning_rate?

Reading YAML, parsing overrides, checking keys and converting values is rewardlab/config_loading.py, the
same code (and the same messages) as the language-model trainers' configs; this module holds what is
classic's own: the shared run fields, run naming, and config.yaml with its `algo` key.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import yaml

from rewardlab.config_loading import (  # noqa: F401  (field_docs, field_types: re-exported for the CLI's --help)
    ConfigError,
    convert_settings,
    field_docs,
    field_types,
    parse_overrides,
    read_yaml_mapping,
)

C = TypeVar("C", bound="RunConfig")


@dataclass
class RunConfig:
    """Fields every classic algorithm shares: the environment, the budget and the run directory."""

    algo: ClassVar[str] = "base"

    env_id: str = "CartPole-v1"
    """Any Gymnasium id whose action space the algorithm supports (see each algorithm's docstring)."""
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments for gymnasium.make, e.g. env_kwargs='{"is_slippery": false}' (JSON on the CLI)."""
    seed: int = 0
    """Seeds python, numpy, torch, the exploration RNG and the environments."""
    total_steps: int = 500_000
    """Environment steps to train for, summed over parallel envs."""
    name: str = ""
    """Run directory name under runs_dir; empty means '<algo>-<env_id>-seed<seed>'."""
    runs_dir: str = "runs"
    """Parent folder of run directories."""
    log_every: int = 5_000
    """Environment steps between rows of metrics.jsonl (rounded up to whole updates)."""
    checkpoint_every: int = 100_000
    """Environment steps between checkpoints; the last step is always checkpointed. 0 = only the last."""
    keep_checkpoints: int = 2
    """How many checkpoint-<step>/ folders to keep (oldest deleted first). 0 keeps all."""
    resume: bool = False
    """Continue from the newest intact checkpoint in the run directory instead of starting over."""
    overwrite: bool = False
    """Start afresh in a run directory that holds an earlier run: its checkpoints, final policy and logs are
    deleted first. Without it (or resume), such a directory is an error."""
    eval_episodes: int = 10
    """Greedy evaluation episodes at the end of training, on seeds no training episode used. 0 = skip."""
    torch_threads: int = 1
    """torch.set_num_threads. Small MLPs run fastest on one thread; more threads only add overhead."""
    progress: bool = True
    """Show a tqdm progress bar while training and print a summary table at the end."""
    tensorboard: bool = True
    """Write TensorBoard events into the run directory (skipped if tensorboard is not installed)."""

    def __post_init__(self) -> None:
        require(self, "total_steps", self.total_steps >= 1, "must be >= 1")
        require(self, "log_every", self.log_every >= 1, "must be >= 1")
        require(self, "checkpoint_every", self.checkpoint_every >= 0, "must be >= 0 (0 = only the last step)")
        require(self, "keep_checkpoints", self.keep_checkpoints >= 0, "must be >= 0 (0 = keep all)")
        require(self, "eval_episodes", self.eval_episodes >= 0, "must be >= 0")
        require(self, "torch_threads", self.torch_threads >= 1, "must be >= 1")
        require(self, "env_kwargs", isinstance(self.env_kwargs, dict), "must be a dict (JSON object on the CLI)")
        require(self, "overwrite", not (self.overwrite and self.resume),
                "cannot go with resume=true (resume continues the run in the directory, overwrite deletes it); pass one")
        if "/" in self.name or self.name in (".", ".."):
            raise ConfigError(f"{self.algo}.name must be a plain folder name, got {self.name!r}")
        for f in dataclasses.fields(self):  # every algorithm's own numbers too: NaN and infinity are refused
            value = getattr(self, f.name)
            require(self, f.name, not (isinstance(value, float) and not math.isfinite(value)), "must be a finite number")
        if hasattr(self, "hidden_sizes"):
            sizes = self.hidden_sizes
            require(self, "hidden_sizes", len(sizes) >= 1 and all(int(s) >= 1 for s in sizes),
                    "needs at least one layer of width >= 1, e.g. 64,64")

    @property
    def run_name(self) -> str:
        # a namespaced id ("rewardlab/MarketMaking-v0") names one folder, not two
        return self.name or f"{self.algo}-{self.env_id.replace('/', '-')}-seed{self.seed}"

    @property
    def run_dir(self) -> Path:
        return Path(self.runs_dir) / self.run_name

    def to_dict(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        # YAML has no tuples; lists round-trip through build_config's type conversion.
        return {"algo": self.algo, **{k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}}


def require(config: RunConfig, name: str, ok: bool, what: str) -> None:
    if not ok:
        raise ConfigError(f"{config.algo}.{name} {what}, got {getattr(config, name)!r}")


def build_config(cls: type[C], overrides: list[str] | dict[str, Any] = (), base: dict[str, Any] | None = None,
                 base_source: str = "base config") -> C:
    """Defaults <- `base` (e.g. a loaded config.yaml; errors name it as `base_source`) <- `overrides` ("key=value"
    strings from the command line, values read as YAML except for text options, which are taken as written;
    or a dict). A wrong key or value is a ConfigError."""
    values = convert_settings(cls, {k: v for k, v in (base or {}).items() if k != "algo"}, base_source)
    if not isinstance(overrides, dict):
        text_options = [name for name, annotation in field_types(cls).items() if annotation is str]
        overrides = parse_overrides(overrides, text_keys=text_options)
    values.update(convert_settings(cls, overrides, "command line"))
    return cls(**values)


def save_config(config: RunConfig, path: Path) -> None:
    path.write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))


def load_config_dict(path: Path) -> dict[str, Any]:
    """A run's config.yaml (as save_config wrote it: with its `algo`)."""
    data = read_yaml_mapping(path)
    if "algo" not in data:
        raise ConfigError(f"{path}: not a rewardlab classic config (expected a mapping with an 'algo' key)")
    return data
