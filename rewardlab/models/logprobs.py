"""Per-token log-probs of given tokens without a full [B, T, V] float32 log-softmax.

The model's decoder runs once; the LM head and the log-softmax then run over chunks of positions,
so at most `chunk_size` x V float32 logits exist at a time. With a large vocabulary and gradients on,
each chunk is recomputed in the backward pass (activation checkpointing) instead of being kept.
"""

from __future__ import annotations

import torch
from torch.utils.checkpoint import checkpoint

# Above this vocabulary size, chunks are recomputed in backward rather than kept.
CHECKPOINT_VOCAB = 8192


def selective_log_softmax(logits: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """log_softmax(logits)[..., index] computed in float32 without materialising the full log-softmax."""
    logits = logits.float()
    return logits.gather(-1, index.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(logits, dim=-1)


def position_ids_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """Positions counted over real tokens only, so left padding does not shift the rotary phase."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def last_hidden_states(backbone: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """The backbone's last hidden states [B, L, H] for padded rows, positions counted over real tokens."""
    return backbone(
        input_ids=input_ids,
        attention_mask=attention_mask,
        position_ids=position_ids_from_mask(attention_mask),
        use_cache=False,
    ).last_hidden_state


def _chunk_logprobs(
    lm_head: torch.nn.Module, hidden: torch.Tensor, targets: torch.Tensor, inv_temperature: float
) -> tuple[torch.Tensor, torch.Tensor]:
    logits = lm_head(hidden).float() * inv_temperature
    lse = torch.logsumexp(logits, dim=-1)
    logp = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - lse
    with torch.no_grad():
        entropy = lse - (torch.softmax(logits, dim=-1) * logits).sum(-1)
    return logp, entropy


def token_logprobs(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    num_completion_tokens: int,
    temperature: float = 1.0,
    chunk_size: int = 2048,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probs and entropies of the last `num_completion_tokens` tokens of each row.

    input_ids, attention_mask: [B, L] = prompt (left-padded) followed by completion (right-padded).
    Returns (logp [B, C], entropy [B, C]); entropy carries no gradient. Logits are divided by
    `temperature` (use the sampling temperature; 0 means greedy and is treated as 1).
    """
    C = num_completion_tokens
    hidden = last_hidden_states(model.get_decoder(), input_ids, attention_mask)
    # The hidden state at position t predicts token t + 1.
    hidden = hidden[:, -C - 1 : -1].reshape(-1, hidden.shape[-1])
    targets = input_ids[:, -C:].reshape(-1)
    lm_head = model.get_output_embeddings()
    inv_t = 1.0 / temperature if temperature > 0 else 1.0
    recompute = torch.is_grad_enabled() and lm_head.weight.shape[0] >= CHECKPOINT_VOCAB
    logps, entropies = [], []
    for start in range(0, hidden.shape[0], chunk_size):
        h, y = hidden[start : start + chunk_size], targets[start : start + chunk_size]
        if recompute:
            lp, ent = checkpoint(_chunk_logprobs, lm_head, h, y, inv_t, use_reentrant=False)
        else:
            lp, ent = _chunk_logprobs(lm_head, h, y, inv_t)
        logps.append(lp)
        entropies.append(ent)
    B = input_ids.shape[0]
    return torch.cat(logps).view(B, C), torch.cat(entropies).view(B, C)
