"""Reward models: a causal LM's backbone plus a linear head giving one score per sequence.

The model is a Hugging Face `...ForSequenceClassification` with num_labels=1 and pad_token_id set, so a
saved reward model loads with `AutoModelForSequenceClassification.from_pretrained(dir)` and scores the
same there: HF reads the head at the rightmost token that is not padding, and `reward_scores` reads it
at the last position the attention mask marks as real (docs/algorithms.md#reward-model). The two agree for
left and right padding alike because positions are counted over real tokens (rotary attention depends
only on the distance between tokens), and because the tokenizer's pad token is not a token of the text.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from .loading import disable_dropout, is_peft, load_policy, resolve_device, resolve_dtype
from .logprobs import last_hidden_states


def _is_saved_head_model(model: str, suffix: str = "ForSequenceClassification") -> bool:
    config = Path(model) / "config.json"
    if not config.is_file():
        return False
    architectures = json.loads(config.read_text()).get("architectures") or []
    return any(name.endswith(suffix) for name in architectures)


def _is_reward_model_dir(model: str) -> bool:
    return _is_saved_head_model(model)


def load_reward_model(
    model: str,
    *,
    dtype: str = "auto",
    device: str = "auto",
    seed: int = 0,
    model_config: dict[str, Any] | None = None,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A reward model and its tokenizer.

    model: a saved reward model (a directory whose config names a ...ForSequenceClassification
    architecture) is loaded as it is; anything load_policy() accepts ("tiny", a causal-LM directory, a
    .gguf file) gives its backbone a fresh head, initialised N(0, 1/sqrt(hidden + 1)) from `seed`.
    """
    return _load_with_head(model, AutoModelForSequenceClassification, 1, "ForSequenceClassification", dtype, device, seed, model_config)


def load_process_reward_model(
    model: str,
    *,
    dtype: str = "auto",
    device: str = "auto",
    seed: int = 0,
    model_config: dict[str, Any] | None = None,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A process reward model: a ...ForTokenClassification with two labels (step wrong, step right) read at
    the last token of each step. A saved one loads as it is; a policy gets a fresh head, as load_reward_model."""
    return _load_with_head(model, AutoModelForTokenClassification, 2, "ForTokenClassification", dtype, device, seed, model_config)


def _load_with_head(model: str, auto_class, num_labels: int, suffix: str, dtype: str, device: str, seed: int,
                    model_config: dict[str, Any] | None) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    if model != "tiny" and _is_saved_head_model(model, suffix):
        from transformers import AutoTokenizer

        dev = resolve_device(device)
        loaded = auto_class.from_pretrained(model, local_files_only=True, dtype=resolve_dtype(dtype, dev)).to(dev)
        tokenizer = AutoTokenizer.from_pretrained(model, local_files_only=True)
        disable_dropout(loaded)
        return loaded, tokenizer

    policy, tokenizer = load_policy(model, dtype=dtype, device=device, seed=seed, model_config=model_config)
    config = policy.config.__class__.from_dict(policy.config.to_dict())
    config.num_labels = num_labels
    config.pad_token_id = tokenizer.pad_token_id
    config.architectures = None
    param = next(policy.parameters())
    with torch.device("meta"):  # the new model's own backbone is replaced at once: do not allocate it
        scored = auto_class.from_config(config)
    prefix = scored.base_model_prefix
    if not hasattr(scored, "score") or getattr(policy, prefix, None) is None:
        raise ValueError(
            f"{type(scored).__name__} has no 'score' head or {type(policy).__name__} no {prefix!r} backbone; "
            "reward models support decoder architectures whose classifier is named 'score' (Llama, Qwen2, Mistral, ...)"
        )
    setattr(scored, prefix, getattr(policy, prefix))
    hidden = config.hidden_size
    head = torch.nn.Linear(hidden, num_labels, bias=False, device=param.device, dtype=param.dtype)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        head.weight.copy_(torch.randn(num_labels, hidden, generator=generator) / math.sqrt(hidden + 1))
    scored.score = head
    scored.train()
    disable_dropout(scored)
    return scored, tokenizer


def token_logits(model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """A token-classification model's logits at every position, [B, T, num_labels] float32."""
    backbone, head = backbone_and_head(model)
    return head(last_hidden_states(backbone, input_ids, attention_mask)).float()


def backbone_and_head(model: torch.nn.Module) -> tuple[torch.nn.Module, torch.nn.Module]:
    """The decoder backbone and the `score` head of a scalar-head model (LoRA-wrapped or not)."""
    inner = model.get_base_model() if is_peft(model) else model
    return getattr(inner, inner.base_model_prefix), inner.score


def reward_scores(model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """One float32 score per row [B], read at the last position whose attention mask is 1.

    Rows may be padded on either side, or hold a left-padded prompt followed by a right-padded completion.
    """
    backbone, head = backbone_and_head(model)
    hidden = last_hidden_states(backbone, input_ids, attention_mask)
    positions = torch.arange(attention_mask.shape[1], device=attention_mask.device)
    last = (positions * attention_mask.long()).argmax(-1)
    pooled = hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
    return head(pooled).squeeze(-1).float()
