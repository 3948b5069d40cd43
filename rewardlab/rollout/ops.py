"""Row selection and concatenation of Rollouts (for batching generation and DAPO's dynamic sampling)."""

from __future__ import annotations

import torch

from ..data.collate import stack_padded
from .types import Rollout


def select_rows(rollout: Rollout, rows: torch.Tensor) -> Rollout:
    """The given rows, in order; group ids renumbered 0..k-1 in order of first appearance."""
    rows = rows.to(rollout.group_index.device)
    _, group_index = torch.unique_consecutive(rollout.group_index[rows], return_inverse=True)
    picked = rows.tolist()
    return Rollout(
        prompt_ids=rollout.prompt_ids[rows],
        prompt_mask=rollout.prompt_mask[rows],
        completion_ids=rollout.completion_ids[rows],
        completion_mask=rollout.completion_mask[rows],
        sampled_logprobs=rollout.sampled_logprobs[rows],
        group_index=group_index,
        finish_reason=[rollout.finish_reason[i] for i in picked],
        prompts_text=[rollout.prompts_text[i] for i in picked] if rollout.prompts_text else [],
        completions_text=[rollout.completions_text[i] for i in picked] if rollout.completions_text else [],
        completion_attention_mask=None if rollout.completion_attention_mask is None else rollout.completion_attention_mask[rows],
    )


def concat_rollouts(parts: list[Rollout], pad_id: int) -> Rollout:
    """Stack rollouts: prompts re-left-padded, completions re-right-padded, group ids kept distinct."""

    cat = stack_padded
    offsets, total = [], 0
    for part in parts:
        offsets.append(total)
        total += int(part.group_index.max()) + 1 if len(part) else 0
    return Rollout(
        prompt_ids=cat([p.prompt_ids for p in parts], pad_id, left=True),
        prompt_mask=cat([p.prompt_mask for p in parts], 0, left=True),
        completion_ids=cat([p.completion_ids for p in parts], pad_id, left=False),
        completion_mask=cat([p.completion_mask for p in parts], 0, left=False),
        sampled_logprobs=cat([p.sampled_logprobs for p in parts], 0.0, left=False),
        group_index=torch.cat([p.group_index + off for p, off in zip(parts, offsets)]),
        finish_reason=[r for p in parts for r in p.finish_reason],
        prompts_text=[t for p in parts for t in p.prompts_text],
        completions_text=[t for p in parts for t in p.completions_text],
        completion_attention_mask=None if all(p.completion_attention_mask is None for p in parts) else cat(
            [p.completion_mask if p.completion_attention_mask is None else p.completion_attention_mask for p in parts], 0, left=False),
        logprobs_source="engine" if any(p.logprobs_source == "engine" for p in parts) else "trainer",
    )
