"""Held-out evaluation: greedy decoding, then the verifier (accuracy) and the run's reward functions (a mean
per function), both called exactly as training calls a reward (rewards/calling.py, RewardFunctions).

    judge(records, texts, completion_ids, verify, rewards) -> Judgement     no model: the scoring alone
    evaluate_policy(model, tokenizer, records, verify, max_new_tokens, rewards) -> Evaluation
    evaluate_accuracy(...) -> (accuracy, rows)                               the accuracy and per-sample rows
    sample_best_of_n(...) -> (correct [P, n], scores [P, n] | None)          n samples per record, judged
    best_of_n_curve(correct, scores, ns) -> {n: accuracy}                   best-of-n, exact over n-subsets

`verify` is a reward function whose 1.0 means correct (inputs.verifier), or None when nothing says what
correct means: then accuracy is None and only the reward means are reported.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from ..rewards.base import RewardFunctions, summary_metrics
from ..rewards.calling import reward_kwargs
from ..rollout import HFEngine, SamplingParams
from .inputs import encode_prompt


@dataclass
class Judgement:
    """One verdict per completion: correct (None without a verifier), and each reward function's value (NaN
    where it does not apply)."""

    correct: list[bool] | None
    rewards: dict[str, list[float]] = field(default_factory=dict)
    logged: dict[str, float] = field(default_factory=dict)  # the reward functions' log_metric means

    @property
    def accuracy(self) -> float | None:
        return None if self.correct is None else sum(self.correct) / max(1, len(self.correct))

    def reward_means(self) -> dict[str, float]:
        """{name: mean over the completions it applies to} (NaN when it applied to none)."""
        stats = summary_metrics({name: torch.tensor(values) for name, values in self.rewards.items()})
        return {name: stats[f"rewards/{name}/mean"] for name in self.rewards}


@dataclass
class Evaluation:
    accuracy: float | None
    reward_means: dict[str, float]
    logged: dict[str, float]
    rows: list[dict]

    def metrics(self, prefix: str = "eval/") -> dict[str, float]:
        """eval/accuracy (when there is a verifier), eval/rewards/<name>/mean, and what the reward functions
        logged with log_metric as eval/<name>."""
        out = {} if self.accuracy is None else {f"{prefix}accuracy": self.accuracy}
        out.update({f"{prefix}rewards/{name}/mean": value for name, value in self.reward_means.items()})
        out.update({f"{prefix}{name}": value for name, value in self.logged.items() if f"{prefix}{name}" not in out})
        return out


def judge(records: list[dict], texts: list[str], completion_ids: list[list[int]], verify,
          rewards: RewardFunctions | None = None) -> Judgement:
    """Score completions of `records` as training scores them: the same arguments (reward_kwargs), the same
    RewardFunctions call. A completion is correct when the verifier gives it at least 1.0."""
    inputs = reward_kwargs(records, texts, completion_ids)
    correct = None
    if verify is not None:
        _, verdict = RewardFunctions([verify])(**inputs)  # the checks and calling convention of training
        correct = [bool(v >= 1.0) for v in next(iter(verdict.values())).tolist()]  # NaN (None) is not correct
    values: dict[str, list[float]] = {}
    logged: dict[str, float] = {}
    if rewards is not None:
        _, per_function = rewards(**inputs)
        values = {name: tensor.tolist() for name, tensor in per_function.items()}
        logged = rewards.last_logs.metric_means()
    return Judgement(correct, values, logged)


@torch.no_grad()
def evaluate_policy(model, tokenizer, records: list[dict], verify, max_new_tokens: int,
                    rewards: RewardFunctions | None = None, batch_rows: int = 512) -> Evaluation:
    """Greedy completions of `records`, judged by the verifier and the reward functions (see judge)."""
    if not records:
        return Evaluation(None, {}, {}, [])
    engine = HFEngine(model, tokenizer, max_batch_rows=batch_rows)
    prompts = [encode_prompt(r["prompt"], tokenizer)[0] for r in records]
    rollout = engine.generate(prompts, 1, SamplingParams(max_new_tokens=max_new_tokens, temperature=0.0))
    texts = rollout.completions_text
    ids = [row[mask.bool()].tolist() for row, mask in zip(rollout.completion_ids, rollout.completion_mask)]
    verdict = judge(records, texts, ids, verify, rewards)
    rows = []
    for i, (record, text) in enumerate(zip(records, texts)):
        row = {"prompt": record["prompt"], "completion": text, "answer": record.get("answer"),
               "correct": None if verdict.correct is None else verdict.correct[i]}
        if verdict.rewards:
            row["rewards"] = {name: (None if math.isnan(v[i]) else v[i]) for name, v in verdict.rewards.items()}
        rows.append(row)
    return Evaluation(verdict.accuracy, verdict.reward_means(), verdict.logged, rows)


@torch.no_grad()
def evaluate_accuracy(
    model, tokenizer, records: list[dict], verify, max_new_tokens: int, batch_rows: int = 512
) -> tuple[float | None, list[dict]]:
    """Greedy accuracy on `records`; returns (accuracy, per-sample rows with prompt/completion/correct). No records
    (a run given training data but no eval_dataset): (None, [])."""
    if not records:
        return None, []
    result = evaluate_policy(model, tokenizer, records, verify, max_new_tokens, batch_rows=batch_rows)
    return result.accuracy, result.rows


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
    ids = [row[mask.bool()].tolist() for row, mask in zip(rollout.completion_ids, rollout.completion_mask)]
    correct = judge(expanded, texts, ids, verify).correct
    samples = [([answer_of(t) for t in texts[i * n : (i + 1) * n]], correct[i * n : (i + 1) * n]) for i in range(len(records))]
    return diversity_metrics(samples, ks)


def best_of_n_curve(correct: torch.Tensor, scores: torch.Tensor | None, ns: list[int]) -> dict[int, float]:
    """Expected accuracy of best-of-n for each n in ns, exactly over the random n-subsets of N samples per prompt
    (no resampling noise). correct [P, N] bool; scores [P, N] or None.

    scores None (the verifier picks, an oracle): pass@n = 1 - C(N - c, n) / C(N, n), with c correct of N.
    scores given (a reward model picks the argmax; ties go to the earlier sample): with the samples sorted by
    score, the one at rank i (0 = best) is the argmax of a random n-subset with probability
    C(N - 1 - i, n - 1) / C(N, n), so the expected accuracy is the sum of correct_i times that weight.
    n = 1 is the mean accuracy of single samples in both cases."""
    P, N = correct.shape
    if any(not 1 <= n <= N for n in ns):
        raise ValueError(f"best-of-n needs 1 <= n <= {N} (the samples drawn per prompt), got {ns}")
    correct = correct.bool()
    out = {}
    for n in ns:
        if scores is None:
            c = correct.sum(1).tolist()
            out[n] = sum(1.0 - math.comb(N - ci, n) / math.comb(N, n) for ci in c) / P
        else:
            weights = torch.tensor([math.comb(N - 1 - i, n - 1) / math.comb(N, n) for i in range(N)], dtype=torch.float64)
            order = torch.sort(-scores.double(), dim=1, stable=True).indices
            out[n] = float((correct.gather(1, order).double() * weights).sum(1).mean())
    return out


@torch.no_grad()
def sample_best_of_n(model, tokenizer, records: list[dict], verify, n: int, max_new_tokens: int,
                     temperature: float = 1.0, scorer=None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """n samples per record at `temperature`: (correct [P, n] by the verifier, the reward model's scores [P, n] or
    None without a scorer)."""
    from .rejection import sample_scored

    samples = sample_scored(model, tokenizer, records, n, SamplingParams(max_new_tokens, temperature),
                            scorer=scorer, verify=verify)
    correct = torch.tensor(samples.correct).view(len(records), n)
    return correct, (samples.rewards.view(len(records), n) if scorer is not None else None)
