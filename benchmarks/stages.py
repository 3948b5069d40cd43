"""Reusing a benchmark stage (a training run under --out) only when it was made with the same arguments.

A benchmark that trains an SFT start, a reward model, ... once and then several runs on top of it may
find those stages already under --out from an earlier invocation. Reusing one is only honest when it was
trained with the arguments this invocation asks for; otherwise old numbers appear under a new command line.

    summary = run_stage(out / "rm", {"method": "rm", "config": path, "overrides": {...}}, train, load)

`run_stage` hashes the arguments (below) and reuses the stage when `<stage>/final` exists and
`<stage>/stage_args.json` holds the same hash. Otherwise it moves any old folder aside (to
`<stage>.replaced-<n>`, nothing is deleted: a trainer appends to an existing metrics.jsonl, so retraining in
place would mix old and new rows), retrains, and writes the hash only after training returned, so an
interrupted run is never taken for a finished one. A stage folder from before this file existed has no
stage_args.json and is retrained the same way.

What the hash covers: the arguments, JSON-serialised with sorted keys (dataclasses as dicts). A value that
names an existing file (a YAML config) contributes the file's contents as well as its path, and a value that
names another stage's folder or its final/ (a model trained by an earlier stage) contributes that stage's
hash, so retraining an upstream stage also invalidates every stage built on it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

STAGE_FILE = "stage_args.json"
DONE = "final"

T = TypeVar("T")


def _stored_hash(stage_dir: Path) -> str | None:
    try:
        return json.loads((stage_dir / STAGE_FILE).read_text())["hash"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _describe(value: Any) -> Any:
    """A JSON-able description of one argument (see the module doc for files and stage folders)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    if isinstance(value, Mapping):
        return {str(k): _describe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_describe(v) for v in value]
    if isinstance(value, (str, Path)) and str(value):
        path = Path(value)
        try:
            if path.is_file():
                return {"path": str(value), "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
            for folder in (path, path.parent):
                if (folder / STAGE_FILE).is_file():
                    return {"path": str(value), "stage": _stored_hash(folder)}
        except OSError:  # a name too long to be a path, say: just a string
            pass
        return str(value)
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if callable(value) and hasattr(value, "__qualname__"):  # a reward function, say: by import path, not id()
        return f"{value.__module__}:{value.__qualname__}"
    return repr(value)


def stage_hash(args: Mapping[str, Any]) -> str:
    """sha256 of the stage's arguments as described by the module doc."""
    text = json.dumps(_describe(args), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def reusable(stage_dir: str | Path, args: Mapping[str, Any]) -> bool:
    """True when the stage finished (final/ exists) with arguments of the same hash."""
    stage_dir = Path(stage_dir)
    return (stage_dir / DONE).exists() and _stored_hash(stage_dir) == stage_hash(args)


def run_stage(stage_dir: str | Path, args: Mapping[str, Any], train: Callable[[], T], load: Callable[[], T]) -> T:
    """`load()` when the stage under stage_dir is reusable for `args`, else `train()` and record the hash."""
    stage_dir = Path(stage_dir)
    if reusable(stage_dir, args):
        print(f"reusing stage {stage_dir} (its {STAGE_FILE} matches these arguments)", flush=True)
        return load()
    if stage_dir.exists():
        if _stored_hash(stage_dir) is None:
            why = f"no {STAGE_FILE} records what it was trained with"
        elif not (stage_dir / DONE).exists():
            why = f"it has no {DONE}/ (unfinished)"
        else:
            why = "it was trained with other arguments"
        aside = next(p for n in range(1, 10**6) if not (p := stage_dir.with_name(f"{stage_dir.name}.replaced-{n}")).exists())
        stage_dir.rename(aside)
        print(f"retraining stage {stage_dir}: {why}; the old folder is now {aside}", flush=True)
    result = train()
    stage_dir.mkdir(parents=True, exist_ok=True)
    (stage_dir / STAGE_FILE).write_text(json.dumps({"hash": stage_hash(args), "args": _describe(args)}, indent=2))
    return result
