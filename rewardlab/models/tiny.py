"""The built-in tiny model: a Llama-architecture causal LM built from a config, no download.

Defaults give about 0.8 M parameters: small enough to train on a laptop CPU in minutes, big enough
to learn multi-digit arithmetic.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

TINY_DEFAULTS: dict[str, Any] = {
    "hidden_size": 128,
    "intermediate_size": 384,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "num_key_value_heads": 4,
    "max_position_embeddings": 256,
    "rope_theta": 10000.0,
    "tie_word_embeddings": True,
    "initializer_range": 0.02,
}


def tiny_config(tokenizer: PreTrainedTokenizerFast, **overrides: Any) -> LlamaConfig:
    unknown = set(overrides) - set(LlamaConfig().to_dict())
    if unknown:
        raise ValueError(f"unknown tiny-model option(s) {sorted(unknown)}; valid: {sorted(TINY_DEFAULTS)}")
    kwargs = {**TINY_DEFAULTS, **overrides}
    return LlamaConfig(
        vocab_size=len(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        attention_dropout=0.0,
        **kwargs,
    )


def build_tiny_model(tokenizer: PreTrainedTokenizerFast, seed: int = 0, **overrides: Any) -> LlamaForCausalLM:
    """A freshly initialised tiny Llama. The same seed gives the same weights."""
    config = tiny_config(tokenizer, **overrides)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    return model
