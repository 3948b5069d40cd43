"""What the rollout stage hands to the rest of the loop."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import torch


@dataclass
class SamplingParams:
    """How to sample completions.

    temperature 0 means greedy decoding. top_k 0 and top_p 1.0 switch those filters off.
    `stop` strings end a completion as soon as its decoded text contains one (the stop string is kept).
    """

    max_new_tokens: int = 64
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    stop: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ValueError(f"SamplingParams.max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.temperature < 0:
            raise ValueError(f"SamplingParams.temperature must be >= 0 (0 = greedy), got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"SamplingParams.top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise ValueError(f"SamplingParams.top_k must be >= 0 (0 = off), got {self.top_k}")
        self.stop = tuple(self.stop)


@dataclass
class Rollout:
    """A batch of B = len(prompts) * n completions, grouped by prompt.

    prompt_ids        [B, P] long, left-padded with the tokenizer's pad id
    prompt_mask       [B, P] long, 1 on real prompt tokens
    completion_ids    [B, C] long, right-padded; tokens after EOS / a stop string are padding
    completion_mask   [B, C] long, 1 on tokens the policy wrote (EOS included, padding excluded)
    sampled_logprobs  [B, C] float, log-prob of each sampled token under the sampling distribution
                      (logits / temperature), 0 on padding
    group_index       [B] long, which prompt (0..len(prompts)-1) each row belongs to
    finish_reason     B strings: "eos", "stop" (a stop string) or "length" (hit max_new_tokens)
    prompts_text / completions_text: decoded text, B each
    completion_attention_mask  [B, C] long or None: 1 on every real completion token. Multi-turn episodes
                      put the environment's text inside the completion, attended to but masked out of the
                      loss; None means the same as completion_mask (single-turn completions)
    logprobs_source   "trainer": sampled_logprobs come from the trainer's own model object (the hf engine), equal
                      to a recomputation up to batching; "engine": from the engine's own copy of the weights or
                      kernels (vLLM), so the trainer recomputes them and corrects for the difference
    """

    prompt_ids: torch.Tensor
    prompt_mask: torch.Tensor
    completion_ids: torch.Tensor
    completion_mask: torch.Tensor
    sampled_logprobs: torch.Tensor
    group_index: torch.Tensor
    finish_reason: list[str]
    prompts_text: list[str] = field(default_factory=list)
    completions_text: list[str] = field(default_factory=list)
    completion_attention_mask: torch.Tensor | None = None
    logprobs_source: str = "trainer"

    def __len__(self) -> int:
        return self.completion_ids.shape[0]

    @property
    def completion_lengths(self) -> torch.Tensor:
        return self.completion_mask.sum(dim=1)

    def sequence_inputs(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(input_ids, attention_mask) of prompt + completion. Multi-turn episodes attend to the environment's
        tokens inside the completion (completion_mask still keeps them out of the loss)."""
        attended = self.completion_mask if self.completion_attention_mask is None else self.completion_attention_mask
        return torch.cat([self.prompt_ids, self.completion_ids], 1), torch.cat([self.prompt_mask, attended], 1)


class Engine(Protocol):
    """What the online loop needs from a generator (ENGINES in rollout/engines.py names the implementations).

    generate  n completions per prompt, with the log-prob of each sampled token under the distribution it was
              drawn from (the trainer recomputes its own and may correct for the difference)
    sync      after each optimizer step: sample from the trainer's current weights from now on
    """

    def generate(self, prompts: list[list[int]], n: int, params: SamplingParams) -> Rollout:
        """Sample n completions for each prompt (token ids, unpadded). Rows are grouped:
        prompt i owns rows i*n .. i*n+n-1."""
        ...

    def sync(self, model: torch.nn.Module) -> None:
        """Take the trainer's weights (an engine that shares the model object has nothing to do)."""
        ...
