"""Held-out accuracy: greedy decoding, then the verifier."""

from __future__ import annotations

import torch

from ..data import columns
from ..rollout import HFEngine, SamplingParams
from .inputs import encode_prompt


def completions_for(records: list[dict], texts: list[str]) -> list:
    """Plain completions for plain prompts, assistant messages for chat prompts (TRL's convention)."""
    return [t if isinstance(r["prompt"], str) else [{"role": "assistant", "content": t}] for r, t in zip(records, texts)]


@torch.no_grad()
def evaluate_accuracy(
    model, tokenizer, records: list[dict], verify, max_new_tokens: int, batch_rows: int = 512
) -> tuple[float, list[dict]]:
    """Greedy accuracy on `records`; returns (accuracy, per-sample rows with prompt/completion/correct)."""
    engine = HFEngine(model, tokenizer, max_batch_rows=batch_rows)
    prompts = [encode_prompt(r["prompt"], tokenizer)[0] for r in records]
    rollout = engine.generate(prompts, 1, SamplingParams(max_new_tokens=max_new_tokens, temperature=0.0))
    texts = rollout.completions_text
    scores = verify(
        prompts=[r["prompt"] for r in records],
        completions=completions_for(records, texts),
        completion_ids=rollout.completion_ids.tolist(),
        **columns(records),
    )
    correct = [s is not None and s >= 1.0 for s in scores]
    rows = [
        {"prompt": r["prompt"], "completion": t, "answer": r.get("answer"), "correct": c}
        for r, t, c in zip(records, texts, correct)
    ]
    return sum(correct) / max(1, len(correct)), rows
