"""`rewardlab classic ...`: train a classic agent, or evaluate a finished run.

    python -m rewardlab.classic.cli ppo --env CartPole-v1 --seed 0 total_steps=200_000
    python -m rewardlab.classic.cli ppo --help              # every option, its default and meaning
    python -m rewardlab.classic.cli eval runs/ppo-CartPole-v1-seed0 --episodes 100 --seed 1000

The top-level `rewardlab` command delegates `rewardlab classic ...` to `main`.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import sys
from pathlib import Path

import torch

from rewardlab.classic.config import (
    ConfigError,
    build_config,
    field_docs,
    field_types,
    load_config_dict,
    read_yaml_mapping,
)
from rewardlab.classic.evaluate import evaluate
from rewardlab.classic.policies import load_policy
from rewardlab.classic.runs import policy_path
from rewardlab.registry import Registry, UnknownNameError

# name -> (module under rewardlab.classic, config class); imported on use
ALGORITHMS: Registry[tuple[str, str]] = Registry("classic algorithm")
for _name, _config_class in [
    ("q_learning", "QLearningConfig"),
    ("dqn", "DQNConfig"),
    ("reinforce", "ReinforceConfig"),
    ("a2c", "A2CConfig"),
    ("ppo", "PPOConfig"),
    ("sac", "SACConfig"),
]:
    ALGORITHMS.add(_name, (f"rewardlab.classic.{_name}", _config_class))


def load_algorithm(name: str):
    """(module with train(config), its config class) for an algorithm name."""
    module_name, class_name = ALGORITHMS[name]
    module = importlib.import_module(module_name)
    return module, getattr(module, class_name)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    usage = (
        "usage: classic <algo> --env ENV_ID [--name NAME] [--seed S] [--resume | --overwrite] [--config YAML] [key=value ...]\n"
        "       classic eval RUN_DIR [--episodes N] [--seed S] [--stochastic] [--json]\n"
        f"algorithms: {', '.join(ALGORITHMS.names())}; `classic <algo> --help` lists its options"
    )
    if not argv or argv[0] in ("-h", "--help"):
        print(usage)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    try:
        if command == "eval":
            return _eval(rest)
        return _train(command, rest)
    except (ValueError, FileNotFoundError, UnknownNameError) as error:
        print(f"rewardlab: error: {error}", file=sys.stderr)
        return 2


def _train(algo: str, argv: list[str]) -> int:
    module, config_class = load_algorithm(algo)
    parser = argparse.ArgumentParser(prog=f"classic {algo}", add_help=False)
    parser.add_argument("--env", dest="env_id")
    parser.add_argument("--name")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--resume", action="store_true", help="continue from the newest checkpoint")
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier run in the run directory")
    parser.add_argument("--config", type=Path, help="start from this YAML file of options (e.g. an earlier run's config.yaml)")
    parser.add_argument("-h", "--help", action="store_true")
    args, overrides = parser.parse_known_args(argv)
    if args.help:
        print(_options_help(algo, config_class))
        return 0
    stray = [item for item in overrides if "=" not in item or item.startswith("-")]
    if stray:
        raise ConfigError(f"unexpected argument(s) {' '.join(stray)}; options are key=value (see `classic {algo} --help`)")
    # --config: a YAML mapping of options, written by hand or an earlier run's config.yaml (whose `algo` must match)
    base = read_yaml_mapping(args.config) if args.config else {}
    saved_algo = base.pop("algo", None)
    if saved_algo is not None and saved_algo != algo:
        raise ConfigError(f"{args.config} is the config of a {saved_algo!r} run; load it with `classic {saved_algo}`, not {algo!r}")
    flags = {key: value for key, value in (("env_id", args.env_id), ("name", args.name), ("seed", args.seed)) if value is not None}
    flags.update({key: True for key in ("resume", "overwrite") if getattr(args, key)})
    config = build_config(config_class, overrides, base={**base, **flags},
                          base_source=str(args.config) if args.config else "command line")
    module.train(config)
    return 0


def _options_help(algo: str, config_class) -> str:
    docs, types_by_name = field_docs(config_class), field_types(config_class)
    defaults = {f.name: f.default if f.default is not dataclasses.MISSING else f.default_factory() for f in dataclasses.fields(config_class)}
    lines = [f"classic {algo} --env ENV_ID [--name NAME] [--seed S] [--resume | --overwrite] [--config YAML] [key=value ...]", "", "options:"]
    for name, annotation in types_by_name.items():
        type_name = getattr(annotation, "__name__", str(annotation).replace("typing.", ""))
        lines.append(f"  {name}={defaults[name]!r}  ({type_name})")
        if docs.get(name):
            lines.append(f"      {docs[name]}")
    return "\n".join(lines)


def _eval(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="classic eval", description="Greedy evaluation of a classic run directory.")
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--seed", type=int, default=1000, help="episode i is reset with seed S + i")
    parser.add_argument("--stochastic", action="store_true", help="sample actions instead of acting greedily")
    parser.add_argument("--checkpoint", type=Path, help="a policy.pt to use instead of the run's final one")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # tiny networks: extra threads only add overhead
    config = load_config_dict(args.run_dir / "config.yaml")
    path = args.checkpoint or policy_path(args.run_dir)
    policy = load_policy(path)
    result = evaluate(policy, config["env_id"], args.episodes, args.seed, config.get("env_kwargs") or {}, deterministic=not args.stochastic)
    if args.json:
        print(json.dumps({"run_dir": str(args.run_dir), "policy": str(path), "seed": args.seed, **result.summary()}))
    else:
        print(
            f"{config['env_id']}  {args.run_dir}: return {result.mean:.2f} ± {result.std:.2f} over {args.episodes} episodes "
            f"(seeds {args.seed}..{args.seed + args.episodes - 1}, min {min(result.returns):.2f}, max {max(result.returns):.2f})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
