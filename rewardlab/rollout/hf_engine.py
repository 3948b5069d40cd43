"""Generation with a Hugging Face causal LM: KV cache, one prefill per prompt shared by its group.

The prompt of each group is run through the model once; its key/value cache is then repeated for the
group's n samples, and decoding proceeds one token per step for all rows together, stopping as soon as
every row has finished. Positions are counted over real tokens (left padding does not shift them), the
same way the trainer's log-prob pass counts them, so both see identical inputs.
"""

from __future__ import annotations

import torch
from transformers import PreTrainedTokenizerBase

from ..data.collate import left_pad
from ..models.logprobs import filter_logits, position_ids_from_mask
from .ops import concat_rollouts
from .types import Rollout, SamplingParams


def sample_tokens(logits: torch.Tensor, params: SamplingParams) -> tuple[torch.Tensor, torch.Tensor]:
    """Next tokens [B] and their log-probs under the distribution they were drawn from: softmax of
    logits / T after top-k/top-p filtering (filter_logits), which the trainer recomputes with the same
    settings. Temperature 0 is greedy."""
    logits = logits.float()
    if params.temperature == 0:
        tokens = logits.argmax(-1)
        return tokens, torch.log_softmax(logits, -1).gather(-1, tokens[:, None]).squeeze(-1)
    logprobs = torch.log_softmax(filter_logits(logits / params.temperature, params.top_k, params.top_p), -1)
    tokens = torch.multinomial(logprobs.exp(), 1).squeeze(-1)
    return tokens, logprobs.gather(-1, tokens[:, None]).squeeze(-1)


class HFEngine:
    """Engine over an in-process transformers model. `max_batch_rows` bounds rows decoded at once."""

    def __init__(self, model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase, max_batch_rows: int = 512):
        self.model = model
        self.tokenizer = tokenizer
        self.max_batch_rows = max_batch_rows
        if tokenizer.pad_token_id is None:
            raise ValueError("the tokenizer has no pad token; set tokenizer.pad_token (e.g. to its eos_token)")

    def sync(self, model: torch.nn.Module) -> None:
        """Nothing to copy: the engine decodes with the trainer's own model object."""
        if model is not self.model:
            raise ValueError("HFEngine.sync got a different model object than the one it decodes with")

    @torch.no_grad()
    def generate(self, prompts: list[list[int]], n: int, params: SamplingParams) -> Rollout:
        if not prompts:
            raise ValueError("generate() got no prompts")
        for i, p in enumerate(prompts):
            if len(p) == 0:
                raise ValueError(f"prompt {i} is empty (0 tokens); every prompt needs at least one token")
        per_call = max(1, self.max_batch_rows // n)
        parts = [self._generate(prompts[i : i + per_call], n, params) for i in range(0, len(prompts), per_call)]
        if len(parts) == 1:
            return parts[0]
        return concat_rollouts(parts, self.tokenizer.pad_token_id)

    def _generate(self, prompts: list[list[int]], n: int, params: SamplingParams) -> Rollout:
        tok, model = self.tokenizer, self.model
        pad_id, eos_id = tok.pad_token_id, tok.eos_token_id
        device = next(model.parameters()).device
        prompt_ids, prompt_mask = left_pad(prompts, pad_id)
        prompt_ids, prompt_mask = prompt_ids.to(device), prompt_mask.to(device)

        # Prefill each distinct prompt once, then share its cache across the group's n samples.
        out = model(
            input_ids=prompt_ids,
            attention_mask=prompt_mask,
            position_ids=position_ids_from_mask(prompt_mask),
            use_cache=True,
            logits_to_keep=1,
        )
        cache = out.past_key_values
        logits = out.logits[:, -1]
        if n > 1:
            cache.batch_repeat_interleave(n)
            logits = logits.repeat_interleave(n, dim=0)
        rows = logits.shape[0]
        attn = prompt_mask.repeat_interleave(n, dim=0)
        next_position = attn.sum(-1, keepdim=True)  # the first completion token's position

        tokens_out, logprobs_out = [], []
        finished = torch.zeros(rows, dtype=torch.bool, device=device)
        reason = ["length"] * rows
        stop_text = params.stop
        for _ in range(params.max_new_tokens):
            tokens, logprobs = sample_tokens(logits, params)
            tokens = tokens.masked_fill(finished, pad_id)
            logprobs = logprobs.masked_fill(finished, 0.0)
            tokens_out.append(tokens)
            logprobs_out.append(logprobs)
            just_eos = (~finished) & (tokens == eos_id)
            for r in just_eos.nonzero().flatten().tolist():
                reason[r] = "eos"
            finished = finished | just_eos
            if stop_text:
                finished = self._check_stop(torch.stack(tokens_out, 1), finished, reason, stop_text)
            if bool(finished.all()):
                break
            attn = torch.cat([attn, torch.ones((rows, 1), dtype=attn.dtype, device=device)], dim=1)
            out = model(
                input_ids=tokens[:, None],
                attention_mask=attn,
                position_ids=next_position,
                past_key_values=cache,
                use_cache=True,
            )
            logits = out.logits[:, -1]
            next_position = next_position + 1

        completion_ids = torch.stack(tokens_out, 1)
        sampled_logprobs = torch.stack(logprobs_out, 1)
        completion_mask = self._completion_mask(completion_ids, reason, stop_text)
        completion_ids = completion_ids.masked_fill(completion_mask == 0, pad_id)
        sampled_logprobs = sampled_logprobs.masked_fill(completion_mask == 0, 0.0)
        rep_prompt_ids = prompt_ids.repeat_interleave(n, dim=0)
        rep_prompt_mask = prompt_mask.repeat_interleave(n, dim=0)
        return Rollout(
            prompt_ids=rep_prompt_ids,
            prompt_mask=rep_prompt_mask,
            completion_ids=completion_ids,
            completion_mask=completion_mask,
            sampled_logprobs=sampled_logprobs,
            group_index=torch.arange(len(prompts), device=device).repeat_interleave(n),
            finish_reason=reason,
            prompts_text=[tok.decode(p) for p in prompts for _ in range(n)],
            completions_text=tok.batch_decode(completion_ids, skip_special_tokens=True),
        )

    def _check_stop(self, ids: torch.Tensor, finished: torch.Tensor, reason: list[str], stops) -> torch.Tensor:
        for r in (~finished).nonzero().flatten().tolist():
            text = self.tokenizer.decode(ids[r], skip_special_tokens=True)
            if any(s in text for s in stops):
                reason[r] = "stop"
                finished[r] = True
        return finished

    def _completion_mask(self, ids: torch.Tensor, reason: list[str], stops) -> torch.Tensor:
        """1 up to and including the EOS (or the token that completed a stop string)."""
        eos = (ids == self.tokenizer.eos_token_id).long()
        # tokens after the first EOS are padding
        after_eos = (eos.cumsum(1) - eos) > 0
        mask = (~after_eos).long()
        if stops:
            for r, why in enumerate(reason):
                if why != "stop":
                    continue
                for t in range(1, ids.shape[1] + 1):
                    text = self.tokenizer.decode(ids[r, :t], skip_special_tokens=True)
                    if any(s in text for s in stops):
                        mask[r, t:] = 0
                        break
        return mask
