"""load_policy(): one entry point for the built-in tiny model, a Hugging Face directory or a .gguf file."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from ..config import ConfigError
from .tiny import build_tiny_model
from .tokenizer import build_char_tokenizer

log = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """"auto" is float32 on CPU (bf16 matmuls are slow or missing on many CPUs) and bf16 on GPUs that have it."""
    if dtype == "auto":
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    if dtype not in DTYPES:
        raise ValueError(f"dtype {dtype!r} is not supported; use one of: auto, {', '.join(DTYPES)}")
    return DTYPES[dtype]


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def disable_dropout(model: torch.nn.Module) -> None:
    """Dropout left on makes the policy's log-probs noisy between the sampling and training passes,
    which reads as KL and clipping that are not there. RL fine-tuning turns it off everywhere."""
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    config = getattr(model, "config", None)
    if config is not None:
        for key, value in list(vars(config).items()):
            if "dropout" in key and isinstance(value, float):
                setattr(config, key, 0.0)


def model_source(model: str) -> tuple[str, dict[str, Any]]:
    """Where from_pretrained reads `model` (a directory with config.json, or a .gguf file's folder plus its
    name), checked without loading anything: a wrong path is a ConfigError before a run starts."""
    path = Path(os.path.expanduser(model))
    if path.suffix == ".gguf":
        if not path.is_file():
            raise ConfigError(f"model {model!r}: GGUF file not found")
        return str(path.parent), {"gguf_file": path.name}
    if path.is_dir() and (path / "config.json").is_file():
        return str(path), {}
    raise ConfigError(
        f"model {model!r} is neither 'tiny', a local Hugging Face directory with config.json, "
        "nor a .gguf file. Nothing is downloaded: pass a local path."
    )


def load_tokenizer(model: str) -> PreTrainedTokenizerBase:
    """The tokenizer of `model` alone (no weights), padding on the left with EOS when it has no pad token."""
    if model == "tiny":
        return build_char_tokenizer()
    source, kwargs = model_source(model)
    tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=True, **kwargs)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    return tokenizer


def load_policy(
    model: str,
    *,
    dtype: str = "auto",
    device: str = "auto",
    seed: int = 0,
    model_config: dict[str, Any] | None = None,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a causal LM and its tokenizer.

    model: "tiny" (built-in, built from `model_config` overrides), a local Hugging Face model directory,
    or a path to a .gguf file (dequantised by transformers + gguf). Nothing is downloaded.
    """
    dev = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, dev)
    if model == "tiny":
        tokenizer = load_tokenizer(model)
        policy = build_tiny_model(tokenizer, seed=seed, **(model_config or {}))
    else:
        if model_config:
            raise ConfigError("model_config only applies to model='tiny'; remove it or set model: tiny")
        source, kwargs = model_source(model)
        tokenizer = load_tokenizer(model)
        policy = AutoModelForCausalLM.from_pretrained(
            source, local_files_only=True, dtype=torch_dtype, **kwargs
        )
        quantizer = getattr(policy, "hf_quantizer", None)
        if quantizer is not None and all(p.is_floating_point() for p in policy.parameters()):
            # a GGUF file dequantised at load keeps its quantizer attached, which makes save_pretrained refuse
            # ("quantized with gguf and is not serializable") and would write a gguf quantization_config into
            # config.json; the weights are ordinary float tensors by now, so drop the marker.
            quantizer.remove_quantization_config(policy)
    policy.to(device=dev, dtype=torch_dtype)
    disable_dropout(policy)
    policy.rewardlab_source = model  # where the weights came from: an adapter's base is saved from it (local_base_dir)
    return policy, tokenizer


def local_base_dir(model: torch.nn.Module) -> Path | None:
    """The local Hugging Face directory from which `type(model).from_pretrained` rebuilds `model`'s base (the
    model under a LoRA adapter), as an absolute path; None when there is none and a saved copy is needed: the
    built-in tiny model (built in memory), a .gguf file (dequantised at load: from_pretrained needs safetensors),
    or a model whose class is not the one the directory's config.json names (a reward model's fresh head on a
    causal LM)."""
    base = model.get_base_model() if is_peft(model) else model
    source = getattr(base, "rewardlab_source", None)
    if source is None:  # not loaded by load_policy: transformers records the directory it read
        source = getattr(getattr(base, "config", None), "_name_or_path", "") or ""
    source = str(source)
    if not source or source == "tiny" or source.lower().endswith(".gguf"):
        return None
    path = Path(os.path.expanduser(source)).resolve()
    try:
        architectures = json.loads((path / "config.json").read_text()).get("architectures") or []
    except (OSError, ValueError):
        return None
    return path if type(base).__name__ in architectures else None


def apply_lora(
    model: PreTrainedModel,
    r: int,
    alpha: float,
    dropout: float = 0.0,
    target_modules: str | list[str] = "all-linear",
    task_type: str = "CAUSAL_LM",
) -> PreTrainedModel:
    """Wrap the model with a LoRA adapter (peft). The frozen base doubles as the reference model.

    task_type "SEQ_CLS" (reward models) keeps the score head fully trainable and saved with the adapter.
    """
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=target_modules, task_type=task_type
    )
    return get_peft_model(model, config)


def is_peft(model: torch.nn.Module) -> bool:
    return hasattr(model, "disable_adapter") and hasattr(model, "peft_config")
