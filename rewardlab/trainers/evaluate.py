"""Held-out accuracy: greedy decoding, then the verifier."""

from __future__ import annotations

import torch

from ..rewards.calling import reward_kwargs
from ..rollout import HFEngine, SamplingParams
from .inputs import encode_prompt


@torch.no_grad()
def evaluate_accuracy(
    model, tokenizer, records: list[dict], verify, max_new_tokens: int, batch_rows: int = 512
) -> tuple[float, list[dict]]:
    """Greedy accuracy on `records`; returns (accuracy, per-sample rows with prompt/completion/correct)."""
    engine = HFEngine(model, tokenizer, max_batch_rows=batch_rows)
    prompts = [encode_prompt(r["prompt"], tokenizer)[0] for r in records]
    rollout = engine.generate(prompts, 1, SamplingParams(max_new_tokens=max_new_tokens, temperature=0.0))
    texts = rollout.completions_text
    kwargs = reward_kwargs(records, texts, rollout.completion_ids.tolist())
    record_columns = kwargs.pop("columns")
    scores = verify(**kwargs, **record_columns)  # a task's verifier takes the columns as keywords
    correct = [s is not None and s >= 1.0 for s in scores]
    rows = [
        {"prompt": r["prompt"], "completion": t, "answer": r.get("answer"), "correct": c}
        for r, t, c in zip(records, texts, correct)
    ]
    return sum(correct) / max(1, len(correct)), rows


@torch.no_grad()
def evaluate_diversity(
    model, tokenizer, records: list[dict], verify, max_new_tokens: int, n: int = 16, temperature: float = 1.0,
    answer_of=lambda text: text.strip(), ks: tuple[int, ...] = (1, 2, 4, 8, 16),
) -> dict[str, float]:
    """Sample n completions per record at `temperature` and measure them (monitor/diversity.py): accuracy,
    distinct correct answers, answer entropy and pass@k. `answer_of` maps a completion to the answer that
    counts as distinct (e.g. countdown_answer)."""
    from ..monitor.diversity import diversity_metrics

    engine = HFEngine(model, tokenizer)
    prompts = [encode_prompt(r["prompt"], tokenizer)[0] for r in records]
    rollout = engine.generate(prompts, n, SamplingParams(max_new_tokens=max_new_tokens, temperature=temperature))
    expanded = [r for r in records for _ in range(n)]
    texts = rollout.completions_text
    kwargs = reward_kwargs(expanded, texts, rollout.completion_ids.tolist())
    record_columns = kwargs.pop("columns")
    scores = verify(**kwargs, **record_columns)
    correct = [s is not None and s >= 1.0 for s in scores]
    samples = [([answer_of(t) for t in texts[i * n : (i + 1) * n]], correct[i * n : (i + 1) * n]) for i in range(len(records))]
    return diversity_metrics(samples, ks)
