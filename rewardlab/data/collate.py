"""Padding and collation, in one place: token lists to padded tensors, and padded tensors to a common width.

Prompts are left-padded (their last token sits at the same column, where generation starts), completions
right-padded (their first token follows the prompt); masks are 1 on real tokens.

    left_pad(seqs, pad_id) / right_pad(seqs, pad_id)  -> (ids [N, W] long, mask [N, W] long)
    collate(prompts, completions, pad_id)            -> (input_ids, attention_mask, completion_mask)
    pad_values(rows, fill)                           lists of numbers -> [N, W], right-padded with fill
    stack_padded(tensors, fill, left)                [n_i, W_i] tensors -> [sum n_i, max W_i]
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _pad(sequences: list[list[int]], pad_id: int, left: bool) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        if seq:
            columns = slice(width - len(seq), width) if left else slice(0, len(seq))
            ids[row, columns] = torch.tensor(seq, dtype=torch.long)
            mask[row, columns] = 1
    return ids, mask


def left_pad(sequences: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token lists -> (ids, mask), each row's tokens at the right end."""
    return _pad(sequences, pad_id, left=True)


def right_pad(sequences: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token lists -> (ids, mask), each row's tokens at the left end."""
    return _pad(sequences, pad_id, left=False)


def collate(prompts: list[list[int]], completions: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(input_ids [N, P + C], attention_mask [N, P + C], completion_mask [N, C]): left-padded prompts
    followed by right-padded completions."""
    prompt_ids, prompt_mask = left_pad(prompts, pad_id)
    completion_ids, completion_mask = right_pad(completions, pad_id)
    return torch.cat([prompt_ids, completion_ids], 1), torch.cat([prompt_mask, completion_mask], 1), completion_mask


def pad_values(rows: list[list], fill) -> torch.Tensor:
    """Rows of numbers (token ids, per-token rewards, mask bits) -> one tensor, right-padded with `fill`."""
    width = max(len(r) for r in rows)
    return torch.tensor([r + [fill] * (width - len(r)) for r in rows])


def stack_padded(tensors: list[torch.Tensor], fill, left: bool) -> torch.Tensor:
    """Stack [n_i, W_i] tensors along rows, padding each to the widest (on the left for prompts)."""
    width = max(t.shape[1] for t in tensors)
    return torch.cat([F.pad(t, (width - t.shape[1], 0) if left else (0, width - t.shape[1]), value=fill) for t in tensors])
