"""The `rewardlab` command.

    rewardlab demo
    rewardlab train grpo --config examples/grpo_arithmetic.yaml learning_rate=1e-4
    rewardlab train grpo --config trl_grpo.yaml --learning_rate 1e-4 --bf16     (TRL's flags and names too)
    rewardlab eval --model runs/demo/final --task arithmetic --seed 7 --n 500
    rewardlab eval --model runs/demo/final --best-of 32 --reward-model runs/rm/final
    rewardlab eval --model runs/dpo/final --reference runs/sft/final --task preference --seed 7
    rewardlab report runs/demo
    rewardlab classic ppo --env CartPole-v1
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
from pathlib import Path


def _train(args: argparse.Namespace) -> int:
    from .config import ConfigError, load_config
    from .trainers import TRAINERS

    overrides = list(args.overrides) + ([f"env={args.env}"] if args.env else [])
    cfg = load_config(args.method, args.config, overrides)
    if args.resume:
        cfg.resume = True
    if args.overwrite:
        if cfg.resume:
            raise ConfigError("--resume continues the run in the directory and --overwrite deletes it; pass one of them")
        cfg.overwrite = True
    TRAINERS[args.method](cfg)
    return 0


def _trained_options(model: str, kind: str, name: str) -> dict | None:
    """The `<kind>_options` a model was trained with (kind "task" or "env"), when `model` is a run's final/
    (or sft/final/) directory whose config.yaml names the same task or env; printed when found."""
    from .config import read_saved_config

    config = Path(model).parent / "config.yaml"
    if not model or not Path(model).is_dir() or not config.is_file():
        return None
    saved = read_saved_config(config)
    options = saved.get(f"{kind}_options")
    if saved.get(kind) != name or not options:
        return None
    print(f"{kind} options from the run's config.yaml: {json.dumps(options)} (pass --{kind}-options to override)")
    return dict(options)


def _eval_env(args: argparse.Namespace) -> int:
    from .envs.evaluate import compare, eval_seeds
    from .monitor import format_table

    try:  # a bad seed or episode count stops here, before a model is loaded or an episode played
        eval_seeds(args.seed, args.n, args.split)
    except ValueError as err:
        print(f"rewardlab: error: {err}", file=sys.stderr)
        return 2

    options = json.loads(args.env_options) if args.env_options else _trained_options(args.model, "env", args.env) or {}
    baselines = [b for b in args.baselines.split(";") if b] if args.baselines is not None else None  # "" = none
    opponents = [o for o in args.opponents.split(";") if o] if args.opponents else None
    rows = compare(args.env, options, args.model, baselines, args.n, args.seed, opponents, args.device, args.max_new_tokens or 24,
                   temperature=args.temperature or 0.0, split=args.split)
    shown = [{k: v for k, v in row.items() if not k.endswith("_mean")} for row in rows]
    print(format_table(shown))
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=2))
        print(f"results: {args.out}")
    return 0


def _play(args: argparse.Namespace) -> int:
    from .envs import make_agent
    from .envs.evaluate import policy_agent
    from .envs.play import play_tictactoe

    agent = policy_agent(args.model, args.device) if args.model else make_agent(args.agent, args.seed)
    try:
        play_tictactoe(agent, human_first=args.human_first, seed=args.seed)
    except (EOFError, KeyboardInterrupt):
        print("\nrewardlab: game abandoned (input ended)", file=sys.stderr)
        return 1
    return 0


def _eval(args: argparse.Namespace) -> int:
    if args.env:
        return _eval_env(args)
    if not args.model:
        print("rewardlab: error: eval needs --model (or --env with baselines)", file=sys.stderr)
        return 2
    from .config import load_config
    from .models import load_policy
    from .trainers.evaluate import evaluate_accuracy
    from .trainers.inputs import eval_records, task_of, verifier

    overrides = {"task": args.task, "eval_n": args.n, "eval_seed": args.seed, "eval_split": args.split}
    if args.task_options:
        overrides["task_options"] = json.loads(args.task_options)
    elif (options := _trained_options(args.model, "task", args.task)) is not None:
        overrides["task_options"] = options
    if args.dataset:
        overrides["eval_dataset"] = args.dataset
    cfg = load_config("sft", None, overrides)
    task = None if args.dataset else task_of(cfg)
    if task is not None and hasattr(task, "gold"):  # a graded gold scorer: mean gold score and win rate
        from .trainers.gold import gold_eval

        return gold_eval(args, cfg, task)
    model, tokenizer = load_policy(args.model, device=args.device)
    records = eval_records(cfg)
    if args.best_of:
        return _eval_best_of(args, model, tokenizer, records, verifier(cfg))
    accuracy, rows = evaluate_accuracy(model, tokenizer, records, verifier(cfg), args.max_new_tokens or 16)
    name = f"eval-{args.task}-seed{args.seed}" + ("-tune" if args.split == "tune" else "")
    out = Path(args.out) if args.out else Path(args.model if Path(args.model).is_dir() else ".") / f"{name}.jsonl"
    with open(out, "w") as fh:
        for row in rows:
            fh.write(json.dumps(row) + "\n")
    if accuracy is None:  # held-out rows with no answer, solution or ground_truth column: nothing says what is correct
        print(f"no accuracy: {args.dataset} has no answer, solution or ground_truth column to check against")
    else:
        print(f"accuracy {accuracy:.4f} ({sum(r['correct'] for r in rows)}/{len(rows)}) on {args.task} {args.split} split, seed {args.seed}")
    print(f"per-sample results: {out}")
    return 0


def _eval_best_of(args: argparse.Namespace, model, tokenizer, records: list[dict], verify) -> int:
    """`eval --best-of N`: N samples per problem, then best-of-n accuracy for n = 1, 2, 4, ..., N picked by the
    verifier (pass@n, an oracle) and, with --reward-model, by the reward model's highest score."""
    from .monitor import format_table
    from .rewards.reward_model import RewardModelScorer
    from .trainers.evaluate import best_of_n_curve, sample_best_of_n

    if verify is None:
        print("rewardlab: error: --best-of needs a verifier (a task, or a dataset with an answer column)", file=sys.stderr)
        return 2
    scorer = None
    if args.reward_model:
        from .config import load_config

        scorer = RewardModelScorer(args.reward_model, load_config("rm", None, {"device": args.device}), next(model.parameters()).device)
    temperature = 1.0 if args.temperature is None else args.temperature
    correct, scores = sample_best_of_n(model, tokenizer, records, verify, args.best_of, args.max_new_tokens or 16,
                                       temperature, scorer)
    ns = sorted({n for n in (2 ** i for i in range(args.best_of.bit_length())) if n <= args.best_of} | {args.best_of})
    by_verifier = best_of_n_curve(correct, None, ns)
    by_model = best_of_n_curve(correct, scores, ns) if scores is not None else {}
    rows = [{"n": n, "by verifier (pass@n)": by_verifier[n], **({"by reward model": by_model[n]} if by_model else {})} for n in ns]
    print(format_table(rows))
    result = {"model": args.model, "task": args.task, "split": args.split, "seed": args.seed, "problems": len(records),
              "samples": args.best_of, "temperature": temperature, "reward_model": args.reward_model or None,
              "by_verifier": by_verifier, "by_reward_model": by_model or None}
    out = Path(args.out) if args.out else Path(args.model if Path(args.model).is_dir() else ".") / f"best_of_{args.best_of}-{args.task}-seed{args.seed}.json"
    out.write_text(json.dumps(result, indent=2))
    print(f"best-of-n on {len(records)} {args.task} {args.split} problems, {args.best_of} samples each at temperature {temperature}: {out}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    run_demo(args.output_dir, args.seed)
    return 0


def _report(args: argparse.Namespace) -> int:
    from .monitor import alarm_steps, plot_gold_vs_proxy, plot_run, read_metrics
    from .monitor.hacking import GOLD

    run_dir = Path(args.run_dir)
    if not (run_dir / "metrics.jsonl").is_file():
        print(f"error: {run_dir / 'metrics.jsonl'} not found; pass a run directory (e.g. runs/demo)", file=sys.stderr)
        return 2
    alarms = alarm_steps(run_dir)
    paths = plot_run(run_dir, mark_steps=[(step, "reward hacking?") for step in alarms])
    if any(GOLD in row for row in read_metrics(run_dir)):
        paths.append(plot_gold_vs_proxy({run_dir.name: run_dir}, run_dir / "plots" / "gold_vs_proxy.png", title=run_dir.name))
    for path in paths:
        print(path)
    if alarms:
        print(f"reward-hacking alarms (proxy up, gold down) at steps: {', '.join(map(str, alarms))}")
    return 0


# `rewardlab train`'s own options; any other --name is a setting, as on TRL's command line
TRAIN_FLAGS = {"--config": True, "--env": True, "--resume": False, "--overwrite": False, "--help": False, "-h": False}
_OVERRIDE = re.compile(r"^[A-Za-z_][\w.]*=")


def settings_from_flags(argv: list[str]) -> list[str]:
    """`train METHOD --learning_rate 1e-6 --bf16 --per-device-train-batch-size=4` (TRL's command line) ->
    `learning_rate=1e-6 bf16=true per_device_train_batch_size=4`: a flag takes the next word as its value unless
    that is another flag or a key=value; alone it is true. Dashes in a name become underscores."""
    command = next((i for i, word in enumerate(argv) if not word.startswith("-")), None)
    if command is None or argv[command] != "train":
        return argv
    out, i = argv[: command + 1], command + 1
    while i < len(argv):
        word = argv[i]
        name, has_value, value = word.partition("=")
        if not word.startswith("--") or name in TRAIN_FLAGS or word == "--":
            out.append(word)
            if TRAIN_FLAGS.get(word) and i + 1 < len(argv):  # --config FILE, --env NAME
                out.append(argv[i + 1])
                i += 1
            i += 1
            continue
        key = name[2:].replace("-", "_")
        if not has_value:
            following = argv[i + 1] if i + 1 < len(argv) else None
            if following is not None and not following.startswith("--") and not _OVERRIDE.match(following):
                value, i = following, i + 1
            else:
                value = "true"
        out.append(f"{key}={value}")
        i += 1
    return out


def build_parser() -> argparse.ArgumentParser:
    from .config import METHOD_PRESETS

    parser = argparse.ArgumentParser(prog="rewardlab", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help=f"train a model: {', '.join(METHOD_PRESETS)}")
    p.add_argument("method", choices=sorted(METHOD_PRESETS))
    p.add_argument("--config", help="YAML config file (see examples/)")
    p.add_argument("--resume", action="store_true", help="continue from the newest intact checkpoint in the run directory")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier run in the run directory (its checkpoints, model and logs are deleted)")
    p.add_argument("--env", default="", help="train on a text environment: tictactoe, bandit, contextual_bandit, a Gymnasium id or module:Class")
    p.add_argument("overrides", nargs="*", help="key=value overrides, e.g. learning_rate=1e-4 (or TRL-style flags: "
                   "--learning_rate 1e-4 --bf16; TRL's names are translated: docs/from_trl.md)")
    p.set_defaults(func=_train)

    p = sub.add_parser("eval", help="held-out accuracy of a model on a task")
    p.add_argument("--model", default="", help="'tiny', a model directory or a .gguf file")
    p.add_argument("--env", default="", help="evaluate on a text environment (with baselines) instead of a task")
    p.add_argument("--env-options", default="", help='JSON environment options, e.g. \'{"arms": 5, "horizon": 50}\'')
    p.add_argument("--baselines", default=None, help="';'-separated baseline agents (default per env; '' for none), e.g. 'random;ucb1'")
    p.add_argument("--opponents", default="", help="tic-tac-toe: ';'-separated opponents, one table block each, e.g. 'random;minimax;mcts(100)'")
    p.add_argument("--task", default="arithmetic")
    p.add_argument("--task-options", default="", help='JSON, e.g. \'{"max_digits": 3}\'; default: those in the config.yaml beside the model\'s directory')
    p.add_argument("--dataset", default="", help="held-out records (.jsonl/.parquet) instead of the task's split")
    p.add_argument("--seed", type=int, default=0, help="seed of the held-out problems (with --env: 0 to 9999)")
    p.add_argument("--split", choices=["test", "tune"], default="test",
                   help="held-out split: test (report results) or tune (choose hyperparameters, early stops, rules)")
    p.add_argument("--n", type=int, default=500, help="number of distinct problems (fewer, with a warning, when the split is smaller)")
    p.add_argument("--max-new-tokens", type=int, default=None, help="generation budget per answer/turn (default 16; 24 with --env)")
    p.add_argument("--device", default="auto")
    p.add_argument("--out", default="", help="per-sample results (.jsonl); default: next to the model")
    p.add_argument("--reference", default="", help="tasks with a gold scorer: report the win rate against this model")
    p.add_argument("--samples", type=int, default=1, help="tasks with a gold scorer: samples per prompt")
    p.add_argument("--best-of", type=int, default=0, help="sample this many answers per problem and report best-of-n "
                   "accuracy for n = 1, 2, 4, ..., N: picked by the verifier (pass@n) and, with --reward-model, by it")
    p.add_argument("--reward-model", default="", help="with --best-of: a reward model directory (rewardlab train rm) that picks")
    p.add_argument("--temperature", type=float, default=None,
                   help="sampling temperature, 0 = greedy (default: 1.0 for tasks with a gold scorer, greedy with --env)")
    p.set_defaults(func=_eval)

    p = sub.add_parser("demo", help="SFT cold start + GRPO on arithmetic with the built-in tiny model")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output-dir", default="runs")
    p.set_defaults(func=_demo)

    p = sub.add_parser("play", help="play tic-tac-toe against a trained model in the terminal")
    p.add_argument("game", choices=["tictactoe"])
    p.add_argument("--model", default="", help="a trained model directory (e.g. runs/grpo/final)")
    p.add_argument("--agent", default="minimax", help="a baseline to play instead of a model: minimax, mcts(N), heuristic, random")
    p.add_argument("--human-first", action="store_true", help="you play x and move first")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.set_defaults(func=_play)

    p = sub.add_parser("report", help="render the PNG plots of a run directory")
    p.add_argument("run_dir")
    p.set_defaults(func=_report)

    # listed for `rewardlab --help` only: main() hands `rewardlab classic ...` to classic/cli.py before parsing
    sub.add_parser("classic", help="classic RL on Gymnasium (rewardlab classic --help)", add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["classic"]:  # its own parser, flags included (argparse would eat e.g. --help)
        from .classic.cli import main as classic_main

        return classic_main(argv[1:])
    parser = build_parser()
    args, extra = parser.parse_known_args(settings_from_flags(argv))
    # key=value overrides after an option (train grpo --config x.yaml beta=0.1): argparse has already
    # filled the positional list before --config, so it hands them back as unknown arguments.
    if extra and getattr(args, "command", None) == "train" and all("=" in e and not e.startswith("-") for e in extra):
        args.overrides = [*args.overrides, *extra]
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if "" not in sys.path and os.getcwd() not in sys.path:  # reward modules in the working directory, as with python -m
        sys.path.insert(0, os.getcwd())
    from .trainers.rundir import TrainingInterrupted

    try:
        return args.func(args)
    except TrainingInterrupted as stop:
        print(f"rewardlab: {stop}", file=sys.stderr)
        return stop.exit_code
    except user_errors() as err:
        if args.debug:
            raise
        print(f"rewardlab: error: {err}", file=sys.stderr)
        return 2


def user_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean a mistake in what the user passed: one line, exit code 2 (a traceback with --debug)."""
    from .config import ConfigError
    from .data import DataError
    from .registry import UnknownNameError
    from .rewards import RewardError
    from .trainers.checkpoint import CheckpointError
    from .trainers.rundir import RunDirError

    return (ConfigError, DataError, RewardError, UnknownNameError, CheckpointError, RunDirError, FileNotFoundError)


if __name__ == "__main__":
    sys.exit(main())
