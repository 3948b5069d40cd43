"""The self-teacher of SDPO, RLSD and SRPO for the online driver (docs/algorithms.md#self-distillation-sdpo-rlsd-srpo).

The teacher is the policy itself (or an exponential moving average of it) re-prompted with privileged
context: a successful sibling from the same group, the task's reference answer, or (followup) the sampled
answer itself followed by a simulated user's complaint and hint, so that the policy's revision teaches its
first answer. It scores the very
completion tokens the student sampled, without gradient. What each objective does with the scores:

    sdpo  per-token reverse-KL distillation toward the teacher, replacing (sdpo_mix = 1) or mixed with
          the policy-gradient loss; samples without a context get no distillation loss
    rlsd  GRPO advantages reweighted per token by the teacher, sign unchanged (algos.rlsd_advantages)
    srpo  failed samples with a context are distilled, with an entropy-aware token weight; correct
          samples, and failed ones with no context, keep the GRPO loss
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch

from ..algos import entropy_weights, sampled_token_distill_loss, srpo_route
from ..config import GRPOConfig
from ..data.collate import left_pad
from ..models import token_logprobs
from ..rollout import Rollout
from .inputs import encode_prompt, task_of


@dataclass
class TeacherScores:
    logp: torch.Tensor  # [B, C] teacher log-probs of the sampled tokens (the sampling log-probs where no context)
    entropy: torch.Tensor  # [B, C] teacher entropy per position
    has_context: torch.Tensor  # [B] bool: the teacher saw a sibling solution or the reference answer

    def rows(self, rows: slice) -> TeacherScores:
        return TeacherScores(self.logp[rows], self.entropy[rows], self.has_context[rows])


def teacher_contexts(
    completions: list[str],
    rewards: list[float],
    group_index: list[int],
    answers: list[str | None],
    source: str,
    success_reward: float,
) -> list[str | None]:
    """The privileged text each sample's teacher sees, or None.

    source "sibling": the next successful completion of the same group after this one (cyclically), never
    the sample itself; "answer": the record's reference answer.

    >>> teacher_contexts(["a", "b", "c", "d"], [1.0, 0.0, 1.0, 0.0], [0, 0, 0, 1], [None] * 4, "sibling", 1.0)
    ['c', 'c', 'a', None]
    """
    if source == "answer":
        return [None if a is None else str(a) for a in answers]
    contexts: list[str | None] = []
    for i, group in enumerate(group_index):
        members = [j for j, g in enumerate(group_index) if g == group]
        start = members.index(i)
        rotated = members[start + 1 :] + members[:start]
        contexts.append(next((completions[j] for j in rotated if rewards[j] >= success_reward), None))
    return contexts


class SelfTeacher:
    """Scores completions under the re-prompted policy (or its EMA): `score(...)`, then `update(policy)` per step."""

    def __init__(self, cfg: GRPOConfig, policy: torch.nn.Module, tokenizer):
        self.cfg = cfg
        self.tokenizer = tokenizer
        self.ema = copy.deepcopy(policy).requires_grad_(False).eval() if cfg.self_teacher == "ema" else None
        self.user = task_of(cfg).followup if cfg.teacher_context == "followup" else None  # the simulated user

    def _prompt_text(self, prompt: str | list[dict]) -> str:
        return prompt if isinstance(prompt, str) else prompt[-1]["content"]

    def _teacher_prompt(self, prompt: str | list[dict], context: str) -> str | list[dict]:
        text = self.cfg.teacher_template.format(prompt=self._prompt_text(prompt), solution=context)
        return text if isinstance(prompt, str) else [*prompt[:-1], {**prompt[-1], "content": text}]

    def _followup_prompt(self, prompt: str | list[dict], completion: str, feedback: str) -> str | list[dict]:
        """The conversation after the user's follow-up: the teacher's next turn is the revised answer."""
        if isinstance(prompt, str):
            return self.cfg.followup_template.format(prompt=prompt, completion=completion, feedback=feedback)
        return [*prompt, {"role": "assistant", "content": completion}, {"role": "user", "content": feedback}]

    def teacher_prompts(self, rollout: Rollout, records: list[dict], rewards: torch.Tensor) -> list[str | list[dict] | None]:
        """Each row's teacher prompt, or None where the teacher has no context (the row keeps its own prompt)."""
        cfg = self.cfg
        if self.user is not None:  # the simulated user's follow-up on the row's own completion (None: satisfied)
            feedback = [self.user(r, text) for r, text in zip(records, rollout.completions_text)]
            return [None if f is None else self._followup_prompt(r["prompt"], text, f)
                    for r, text, f in zip(records, rollout.completions_text, feedback)]
        contexts = teacher_contexts(
            rollout.completions_text, rewards.tolist(), rollout.group_index.tolist(),
            [r.get("answer") for r in records], cfg.teacher_context, cfg.success_reward,
        )
        return [None if c is None else self._teacher_prompt(r["prompt"], c) for r, c in zip(records, contexts)]

    @torch.no_grad()
    def score(self, policy: torch.nn.Module, rollout: Rollout, records: list[dict], rewards: torch.Tensor) -> TeacherScores:
        cfg = self.cfg
        contexts = self.teacher_prompts(rollout, records, rewards)
        prompts = [encode_prompt(r["prompt"] if c is None else c, self.tokenizer, cfg.max_prompt_length)[0]
                   for r, c in zip(records, contexts)]
        device = rollout.completion_ids.device
        prompt_ids, prompt_mask = (t.to(device) for t in left_pad(prompts, self.tokenizer.pad_token_id))
        attended = rollout.completion_mask if rollout.completion_attention_mask is None else rollout.completion_attention_mask
        input_ids = torch.cat([prompt_ids, rollout.completion_ids], 1)
        attention = torch.cat([prompt_mask, attended], 1)
        model = self.ema if self.ema is not None else policy
        logp, entropy = token_logprobs(model, input_ids, attention, rollout.completion_ids.shape[1], cfg.temperature)
        has_context = torch.tensor([c is not None for c in contexts], device=device)
        sampled = rollout.sampled_logprobs.to(logp.device)
        logp = torch.where(has_context.unsqueeze(1), logp, sampled)
        return TeacherScores(logp, entropy, has_context)

    @torch.no_grad()
    def update(self, policy: torch.nn.Module) -> None:
        """EMA step: teacher <- (1 - rate) teacher + rate policy."""
        if self.ema is None:
            return
        for target, source in zip(self.ema.parameters(), policy.parameters()):
            target.lerp_(source.detach(), self.cfg.teacher_ema_rate)

    def state_dict(self) -> dict:
        return {"ema": self.ema.state_dict()} if self.ema is not None else {}

    def load_state_dict(self, state: dict) -> None:
        if self.ema is not None and "ema" in state:
            self.ema.load_state_dict(state["ema"])


def self_distill_per_token(
    objective: str,
    pg_per_token: torch.Tensor,
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    teacher: TeacherScores,
    correct: torch.Tensor,
    mask: torch.Tensor,
    mix: float,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The per-token loss of sdpo or srpo from the policy-gradient one ([B, C] each) and the teacher's scores."""
    distill, metrics = sampled_token_distill_loss(logp, teacher.logp, old_logp, mask)
    if objective == "sdpo":
        distill = torch.where(teacher.has_context.unsqueeze(1), distill, 0.0)
        per_token = distill if mix == 1.0 else (1.0 - mix) * pg_per_token + mix * distill
        share = float(teacher.has_context.float().mean())
    else:  # srpo
        routed = srpo_route(correct, teacher.has_context)
        weights = entropy_weights(teacher.entropy, mask.bool() & routed.unsqueeze(1))
        per_token = torch.where(routed.unsqueeze(1), weights * distill, pg_per_token)
        share = float(routed.float().mean())
    return per_token, {"self_distill/reverse_kl": metrics["reverse_kl"], "self_distill/rows": share}
