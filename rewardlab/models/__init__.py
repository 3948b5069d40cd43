"""Policies: the built-in tiny model and char tokenizer, loading, LoRA, chunked log-probs."""

from .loading import apply_lora, disable_dropout, is_peft, load_policy, resolve_device, resolve_dtype
from .logprobs import last_hidden_states, position_ids_from_mask, token_logprobs
from .scalar_head import (
    backbone_and_head,
    load_process_reward_model,
    load_reward_model,
    reward_scores,
    token_logits,
)
from .tiny import TINY_DEFAULTS, build_tiny_model, tiny_config
from .tokenizer import CHAT_TEMPLATE, build_char_tokenizer

__all__ = [
    "CHAT_TEMPLATE",
    "TINY_DEFAULTS",
    "apply_lora",
    "backbone_and_head",
    "build_char_tokenizer",
    "build_tiny_model",
    "disable_dropout",
    "is_peft",
    "last_hidden_states",
    "load_policy",
    "load_process_reward_model",
    "load_reward_model",
    "position_ids_from_mask",
    "resolve_device",
    "resolve_dtype",
    "reward_scores",
    "token_logits",
    "tiny_config",
    "token_logprobs",
]
