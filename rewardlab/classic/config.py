"""Flat, typed configs for the classic algorithms and the `key=value` overrides that build them.

Every algorithm has one dataclass (`PPOConfig`, `DQNConfig`, ...) in its own file. They all start with
the same run fields below (which env, how long, where the run directory goes), then list their own
hyperparameters, each with a docstring. Nothing is nested: `config.learning_rate`, never
`config.optim.lr`.

    cfg = build_config(PPOConfig, ["env_id=Acrobot-v1", "total_steps=200_000"])
    cfg = build_config(PPOConfig, ["learnin_rate=1e-3"])
    # ValueError: unknown option 'learnin_rate' for ppo; did you mean 'learning_rate'? ...
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import inspect
import json
import math
import textwrap
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import yaml

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
            raise ValueError(f"{self.algo}.name must be a plain folder name, got {self.name!r}")
        for f in dataclasses.fields(self):  # every algorithm's own numbers too: NaN and infinity are refused
            value = getattr(self, f.name)
            require(self, f.name, not (isinstance(value, float) and not math.isfinite(value)), "must be a finite number")
        if hasattr(self, "hidden_sizes"):
            sizes = self.hidden_sizes
            require(self, "hidden_sizes", len(sizes) >= 1 and all(int(s) >= 1 for s in sizes),
                    "needs at least one layer of width >= 1, e.g. 64,64")

    @property
    def run_name(self) -> str:
        return self.name or f"{self.algo}-{self.env_id}-seed{self.seed}"

    @property
    def run_dir(self) -> Path:
        return Path(self.runs_dir) / self.run_name

    def to_dict(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        # YAML has no tuples; lists round-trip through build_config's type conversion.
        return {"algo": self.algo, **{k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}}


def require(config: RunConfig, name: str, ok: bool, what: str) -> None:
    if not ok:
        raise ValueError(f"{config.algo}.{name} {what}, got {getattr(config, name)!r}")


def field_types(cls: type[RunConfig]) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def field_docs(cls: type[RunConfig]) -> dict[str, str]:
    """The docstring under each field (for `--help`), read from the class source of cls and its bases."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not (isinstance(klass, type) and issubclass(klass, RunConfig)):
            continue
        body = ast.parse(textwrap.dedent(inspect.getsource(klass))).body[0].body
        for node, after in zip(body, body[1:]):
            if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and isinstance(after, ast.Expr):
                if isinstance(after.value, ast.Constant) and isinstance(after.value.value, str):
                    docs[node.target.id] = " ".join(after.value.value.split())
    return docs


def build_config(cls: type[C], overrides: list[str] | dict[str, Any] = (), base: dict[str, Any] | None = None) -> C:
    """Defaults <- `base` (e.g. a loaded config.yaml) <- `overrides` ("key=value" strings or a dict)."""
    types_by_name = field_types(cls)
    values: dict[str, Any] = {}
    pairs: list[tuple[str, Any]] = [(k, v) for k, v in (base or {}).items() if k != "algo"]
    if isinstance(overrides, dict):
        pairs += list(overrides.items())
    else:
        for item in overrides:
            key, sep, text = item.partition("=")
            if not sep or not key:
                raise ValueError(f"expected key=value, got {item!r} (e.g. learning_rate=3e-4)")
            pairs.append((key.strip(), text))
    for key, raw in pairs:
        if key not in types_by_name:
            close = difflib.get_close_matches(key, list(types_by_name), n=3)
            hint = f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
            raise ValueError(f"unknown option {key!r} for {cls.algo}; {hint}valid options: {', '.join(types_by_name)}")
        values[key] = convert(raw, types_by_name[key], f"{cls.algo}.{key}")
    return cls(**values)


def convert(raw: Any, annotation: Any, where: str) -> Any:
    """Turn a CLI string (or a YAML value) into the field's declared type, or say what was expected."""
    origin = typing.get_origin(annotation)
    try:
        if annotation is bool:
            if isinstance(raw, bool):
                return raw
            lowered = str(raw).strip().lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if annotation is int:
            if isinstance(raw, bool):
                raise ValueError
            number = float(str(raw).replace("_", "")) if isinstance(raw, str) else raw
            if float(number) != int(number):
                raise ValueError
            return int(number)
        if annotation is float:
            return float(str(raw).replace("_", "")) if isinstance(raw, str) else float(raw)
        if annotation is str:
            return str(raw)
        if origin is tuple:
            (item_type, _ellipsis) = typing.get_args(annotation)
            items = [s for s in raw.split(",") if s.strip()] if isinstance(raw, str) else list(raw)
            return tuple(convert(item, item_type, where) for item in items)
        if origin is dict:
            value = json.loads(raw) if isinstance(raw, str) else raw
            if not isinstance(value, dict):
                raise ValueError
            return value
        if origin in (typing.Union, types.UnionType):  # `str | None` and friends
            if raw is None or (isinstance(raw, str) and raw.lower() in ("none", "null")):
                return None
            inner = [a for a in typing.get_args(annotation) if a is not type(None)]
            return convert(raw, inner[0], where)
    except (ValueError, TypeError, json.JSONDecodeError):
        pass
    else:
        raise TypeError(f"{where}: unsupported field type {annotation!r}")
    expected = {bool: "true/false", int: "an integer, e.g. 100_000 or 1e5", float: "a number, e.g. 3e-4"}
    what = expected.get(annotation, "a JSON object" if origin is dict else "comma-separated values" if origin is tuple else str(annotation))
    raise ValueError(f"{where} expects {what}, got {raw!r}")


def save_config(config: RunConfig, path: Path) -> None:
    path.write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))


def load_config_dict(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(Path(path).read_text())
    if not isinstance(data, dict) or "algo" not in data:
        raise ValueError(f"{path}: not a rewardlab classic config (expected a mapping with an 'algo' key)")
    return data
