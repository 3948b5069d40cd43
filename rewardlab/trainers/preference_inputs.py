"""Preference and unpaired records for the reward-model and DPO-family trainers: where they come from,
how they become token ids, and how a batch is laid out.

A batch row is a left-padded prompt followed by a right-padded completion ending in EOS, the layout
`token_logprobs` and `reward_scores` read. Pairs are laid out chosen rows first, then rejected rows, so
one forward pass scores both sides.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from ..config import CommonConfig
from ..data import (
    DataError,
    load_records,
    render_completion,
    render_prompt,
    validate_preference_records,
    validate_unpaired_records,
)
from ..data.collate import collate
from ..data.sources import check_resumed_data, use_sources
from .inputs import task_of

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------- records


def _task_rows(cfg: CommonConfig, kind: str, n: int, seed: int, split: str) -> list[dict]:
    task = task_of(cfg)
    method = {"pairs": "preference_pairs", "unpaired": "unpaired"}[kind]
    if not hasattr(task, method):
        raise DataError(
            f"task {cfg.task!r} has no preference data ({method}); use task: preference, or give a dataset "
            "of {prompt, chosen, rejected} rows (or {prompt, completion, label} rows for KTO)"
        )
    return getattr(task, method)(n, seed=seed, split=split)


def unpair(records: list[dict]) -> list[dict]:
    """Preference pairs as KTO rows: each chosen completion desirable, each rejected one undesirable."""
    rows = []
    for record in records:
        prompt, chosen, rejected = split_conversation(record)
        rows.append({"prompt": prompt, "completion": chosen, "label": True})
        rows.append({"prompt": prompt, "completion": rejected, "label": False})
    return rows


def is_paired(records: list[dict]) -> bool:
    return bool(records) and "chosen" in records[0]


def preference_records(cfg: CommonConfig, n: int, unpaired: bool = False, split: str = "train") -> list[dict]:
    """Validated training (split "train") or held-out (split "tune" or "test") records: {prompt, chosen,
    rejected}, or with unpaired=True {prompt, completion, label} (paired data is split with `unpair`).
    The dataset may be a file or data passed from Python (rewardlab/data/sources.py)."""
    use_sources(cfg)
    if split == "train":
        check_resumed_data(cfg)
    path = cfg.dataset if split == "train" else cfg.eval_dataset
    if path:
        records = load_records(path)
        source = str(path)
    else:
        kind = "unpaired" if unpaired and split == "train" else "pairs"
        seed = cfg.seed if split == "train" else cfg.eval_seed
        records = _task_rows(cfg, kind, n, seed, split)
        source = f"task {cfg.task} ({split} split)"
    if not records:
        raise DataError(f"{source} has no records; check that the file or split is not empty.")
    if is_paired(records) or not unpaired:
        if "completion" in records[0] and "chosen" not in records[0]:
            raise DataError(
                f"{source} holds {{prompt, completion, label}} rows, which only loss_type kto can use; "
                "give {prompt, chosen, rejected} pairs, or set loss_type: kto"
            )
        validate_preference_records(records, source=source)
        if unpaired:
            records = unpair(records)
    else:
        validate_unpaired_records(records, source=source)
    if split == "test" and path:
        records = records[: cfg.eval_n]
    return records


def split_conversation(record: dict) -> tuple:
    """(prompt, chosen, rejected) of a pair; a chat pair without a 'prompt' gives up its shared opening
    messages as the prompt."""
    if record.get("prompt") is not None:
        return record["prompt"], record["chosen"], record["rejected"]
    chosen, rejected = list(record["chosen"]), list(record["rejected"])
    split = len(chosen)
    while split > 0 and chosen[split - 1]["role"] == "assistant":
        split -= 1
    if chosen[:split] != rejected[:split]:
        raise DataError(
            "a chat pair without 'prompt' must open with the same messages in 'chosen' and 'rejected' (the "
            f"prompt); these differ: {chosen[:split]!r} vs {rejected[:split]!r}. Add a 'prompt' field."
        )
    return chosen[:split], chosen[split:], rejected[split:]


# ---------------------------------------------------------------------------------------------- tokens


@dataclass
class EncodedRows:
    """Token ids of records. Pairs: completions[0] chosen, completions[1] rejected; unpaired: one list
    of completions plus labels."""

    prompts: list[list[int]]
    completions: list[list[list[int]]]
    labels: list[bool] | None = None
    margins: list[float] | None = None
    truncated: int = 0


def _completion_ids(prompt, completion, tokenizer) -> list[int]:
    ids = tokenizer(render_completion(completion, tokenizer, prompt=prompt), add_special_tokens=False)["input_ids"]
    if not ids or ids[-1] != tokenizer.eos_token_id:
        ids = ids + [tokenizer.eos_token_id]
    return ids


def encode_records(records: list[dict], tokenizer, max_length: int, max_prompt_length: int = 0, source: str = "records") -> EncodedRows:
    """Tokenize pairs or unpaired rows. Prompts are cut from the left to max_prompt_length (when set),
    completions at the end so that prompt + completion fits max_length; rows cut are counted."""
    paired = is_paired(records)
    prompts, sides, margins, labels, truncated = [], ([], []) if paired else ([],), [], [], 0
    for row, record in enumerate(records):
        if paired:
            prompt, *completions = split_conversation(record)
        else:
            prompt, completions = record["prompt"], [record["completion"]]
            labels.append(bool(record["label"]))
        prompt_ids = tokenizer(render_prompt(prompt, tokenizer), add_special_tokens=False)["input_ids"]
        if not prompt_ids:
            raise DataError(f"row {row} of {source}: 'prompt' encodes to zero tokens; every prompt needs text")
        cut = False
        if max_prompt_length and len(prompt_ids) > max_prompt_length:
            prompt_ids, cut = prompt_ids[-max_prompt_length:], True
        room = max_length - len(prompt_ids)
        if room < 1:
            raise DataError(
                f"row {row} of {source}: the prompt alone has {len(prompt_ids)} tokens, leaving no room for the "
                f"completion within max_length={max_length}; raise max_length or set max_prompt_length"
            )
        for side, completion in zip(sides, completions):
            try:
                ids = _completion_ids(prompt, completion, tokenizer)
            except DataError as err:  # e.g. a chat template that cannot split this completion off
                raise DataError(f"row {row} of {source}: {err}") from None
            if len(ids) > room:
                ids, cut = ids[:room], True
            side.append(ids)
        prompts.append(prompt_ids)
        truncated += cut
        if paired and record.get("margin") is not None:
            margins.append(float(record["margin"]))
    if margins and len(margins) != len(records):
        without = next(row for row, record in enumerate(records) if record.get("margin") is None)
        with_one = next(row for row, record in enumerate(records) if record.get("margin") is not None)
        raise DataError(f"row {without} of {source} has no 'margin' but row {with_one} has one; give every pair a "
                        "margin or none")
    if truncated:
        log.warning("%d of %d rows of %s were cut to fit max_length=%d / max_prompt_length=%d",
                    truncated, len(records), source, max_length, max_prompt_length)
    return EncodedRows(prompts, list(sides), labels if not paired else None, margins or None, truncated)


def pair_batch(encoded: EncodedRows, rows: list[int], pad_id: int, device: torch.device):
    """Chosen rows then rejected rows of the given pairs, in one padded batch on `device`."""
    prompts = [encoded.prompts[i] for i in rows]
    completions = [encoded.completions[0][i] for i in rows] + [encoded.completions[1][i] for i in rows]
    input_ids, attention, completion_mask = collate(prompts + prompts, completions, pad_id)
    return input_ids.to(device), attention.to(device), completion_mask.to(device)
