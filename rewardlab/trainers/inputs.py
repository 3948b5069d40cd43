"""Where a trainer's records, prompts and reward functions come from."""

from __future__ import annotations

import importlib
import logging
from typing import Any

from ..config import CommonConfig, ConfigError
from ..data import DataError, load_records, render_completion, render_prompt, validate_prompt_records
from ..rewards import REWARDS, RewardError, RewardFunctions
from ..rewards.calling import reward_kwargs
from ..tasks import make_task
from ..tasks.splits import EVAL_SPLITS

log = logging.getLogger(__name__)


def task_of(cfg: CommonConfig):
    return make_task(cfg.task, **cfg.task_options)


def train_records(cfg: CommonConfig, n: int, required: tuple[str, ...] = ("prompt",)) -> list[dict]:
    if cfg.env and not cfg.dataset:  # a text environment: its demonstrator's turns (the SFT cold start)
        from .env_rollouts import demonstration_records

        return demonstration_records(cfg, n)
    if cfg.dataset:
        records = load_records(cfg.dataset)
        source = cfg.dataset
    else:
        records = task_of(cfg).generate(n, seed=cfg.seed, split="train")
        source = f"task {cfg.task} (train split)"
    validate_prompt_records(records, required=required, source=source)
    return records


def eval_split(cfg: CommonConfig) -> str:
    """The held-out split evaluation draws from (cfg.eval_split): "test" (report) or "tune" (choose)."""
    split = getattr(cfg, "eval_split", "test")
    if split not in EVAL_SPLITS:
        raise ConfigError(f"eval_split must be 'tune' or 'test', got {split!r} (the train split is what training draws from)")
    return split


def eval_records(cfg: CommonConfig, n: int | None = None, seed: int | None = None, split: str | None = None) -> list[dict]:
    """The held-out records: the eval dataset's first n, or n distinct problems of the task's eval_split
    (tune or test; all of it, with a warning, when the split has fewer)."""
    n = cfg.eval_n if n is None else n
    seed = cfg.eval_seed if seed is None else seed
    split = eval_split(cfg) if split is None else split
    if cfg.eval_dataset:
        records = load_records(cfg.eval_dataset)[:n]
        validate_prompt_records(records, source=cfg.eval_dataset)
        return records
    if cfg.env:
        from .env_rollouts import demonstration_records

        return demonstration_records(cfg, n, split=split)
    return task_of(cfg).generate(n, seed=seed, split=split)


def encode_prompt(prompt: str | list[dict], tokenizer, max_length: int | None = None) -> tuple[list[int], bool]:
    """Token ids of a prompt (chat prompts through the chat template), left-truncated to max_length.

    A very long prompt is cut to its last characters before tokenizing (a 10 MB prompt costs what a
    max_length one does), keeping enough of them that the last max_length tokens come out the same.
    """
    text = render_prompt(prompt, tokenizer)
    keep = (max_length or 0) * 16 + 64  # characters; doubled while they give too few tokens
    while True:
        cut = bool(max_length) and len(text) > keep
        ids = tokenizer(text[-keep:] if cut else text, add_special_tokens=False)["input_ids"]
        if not cut or len(ids) > max_length + 8:  # the first tokens of a cut text may differ; they are dropped
            break
        keep *= 2
    if not ids:
        raise DataError(f"prompt {str(prompt)[:200]!r} encodes to zero tokens; every prompt needs text")
    if max_length and (cut or len(ids) > max_length):
        return ids[-max_length:], True
    return ids, False


def encode_completion(record: dict, tokenizer) -> list[int]:
    """Completion tokens for supervised training, ending in EOS."""
    text = render_completion(record["completion"], tokenizer, prompt=record["prompt"])
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if not ids or ids[-1] != tokenizer.eos_token_id:
        ids = ids + [tokenizer.eos_token_id]
    return ids


def _import_function(path: str):
    module_name, _, attr = path.partition(":")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as err:
        raise RewardError(f"cannot import reward function {path!r} ({err}); use 'package.module:function'") from None


def reward_functions(cfg: Any) -> RewardFunctions:
    """The config's reward functions: names from REWARDS, "module:function" paths, or the task's verifier."""
    if cfg.reward_funcs:
        funcs = [f if callable(f) else _import_function(f) if ":" in f else REWARDS[f] for f in cfg.reward_funcs]
    elif cfg.dataset:
        funcs = [REWARDS["math"]]
    else:
        funcs = task_of(cfg).reward_functions()
    return RewardFunctions(funcs, cfg.reward_weights or None, getattr(cfg, "reward_timeout", 0.0), getattr(cfg, "reward_workers", 0))


def verifier(cfg: CommonConfig):
    """The function evaluation counts as correct/incorrect (first reward of the task, or math)."""
    if cfg.eval_dataset or cfg.dataset:
        return REWARDS["math"]
    if cfg.env:  # the share of legal, parseable actions
        from .env_rollouts import legal_action_verifier

        return legal_action_verifier(cfg)
    return task_of(cfg).reward_functions()[0]


def preflight_rewards(rewards: RewardFunctions, records: list[dict], n: int = 2) -> None:
    """Call the reward functions once on a few records (their reference answer, or "", as the completion)
    so a missing column, a wrong signature or a wrong return count fails before anything is written."""
    sample = records[:n]
    texts = [str(r.get("answer", r.get("completion", ""))) if not isinstance(r.get("completion"), list) else "" for r in sample]
    rewards(**reward_kwargs(sample, texts, [[] for _ in sample]))
