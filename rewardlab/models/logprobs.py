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


def filter_logits(scaled_logits: torch.Tensor, top_k: int = 0, top_p: float = 1.0) -> torch.Tensor:
    """Temperature-scaled logits [..., V] with the tokens outside top-k / the top-p nucleus set to -inf.

    The sampler draws from softmax of this, and the trainer recomputes log-probs under the same filtered
    distribution, so the two agree on what was sampled (a token always stays: the most likely one).
    The filter is chosen without gradient; gradients flow through the kept logits.

    >>> filter_logits(torch.tensor([0.0, 3.0, 1.0, 2.9]), top_k=2).tolist()
    [-inf, 3.0, -inf, 2.9000000953674316]
    """
    filtered = scaled_logits
    if top_k > 0:
        kth = torch.topk(filtered.detach(), min(top_k, filtered.shape[-1]), dim=-1).values[..., -1:]
        filtered = filtered.masked_fill(filtered.detach() < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = torch.sort(filtered.detach(), descending=True, dim=-1)
        probs = torch.softmax(sorted_logits, -1)
        # drop a token when the tokens before it already cover top_p (the first token always stays)
        drop_sorted = (probs.cumsum(-1) - probs) >= top_p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        filtered = filtered.masked_fill(drop, float("-inf"))
    return filtered


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
    lm_head: torch.nn.Module, hidden: torch.Tensor, targets: torch.Tensor, inv_temperature: float, top_k: int, top_p: float
) -> tuple[torch.Tensor, torch.Tensor]:
    logits = filter_logits(lm_head(hidden).float() * inv_temperature, top_k, top_p)
    lse = torch.logsumexp(logits, dim=-1)
    logp = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - lse
    with torch.no_grad():
        probs = torch.softmax(logits, dim=-1)
        entropy = lse - (probs * logits.masked_fill(probs == 0, 0.0)).sum(-1)
    return logp, entropy


def token_logprobs(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    num_completion_tokens: int,
    temperature: float = 1.0,
    chunk_size: int = 2048,
    top_k: int = 0,
    top_p: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probs and entropies of the last `num_completion_tokens` tokens of each row.

    input_ids, attention_mask: [B, L] = prompt (left-padded) followed by completion (right-padded).
    Returns (logp [B, C], entropy [B, C]); entropy carries no gradient. Logits are divided by
    `temperature` (use the sampling temperature; 0 means greedy and is treated as 1). top_k / top_p give
    the log-probs under the sampler's filtered distribution (filter_logits), as the engine reports them;
    a token outside the kept set gets -inf, so pass them only for the policy that sampled the tokens.
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
            lp, ent = checkpoint(_chunk_logprobs, lm_head, h, y, inv_t, top_k, top_p, use_reentrant=False)
        else:
            lp, ent = _chunk_logprobs(lm_head, h, y, inv_t, top_k, top_p)
        logps.append(lp)
        entropies.append(ent)
    B = input_ids.shape[0]
    return torch.cat(logps).view(B, C), torch.cat(entropies).view(B, C)


class PolicyLogProbs(torch.nn.Module):
    """token_logprobs of a policy as a module, so that a distributed wrapper (DistributedDataParallel) sees the
    forward pass it must synchronise the gradients of: forward(input_ids, attention_mask, C, temperature,
    top_k, top_p) -> (logp [B, C], entropy [B, C])."""

    def __init__(self, policy: torch.nn.Module):
        super().__init__()
        self.policy = policy

    def forward(self, input_ids, attention_mask, num_completion_tokens: int, temperature: float = 1.0,
                top_k: int = 0, top_p: float = 1.0):
        return token_logprobs(self.policy, input_ids, attention_mask, num_completion_tokens, temperature,
                              top_k=top_k, top_p=top_p)
