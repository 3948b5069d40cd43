"""Diversity of sampled answers: distinct correct answers, answer entropy and pass@k.

Input: for each prompt, the answers of its n samples and whether each was correct. A reward maximiser
that collapses onto one answer per prompt keeps accuracy but loses distinct answers and entropy; pass@k
for large k shows whether the other answers are still reachable.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples of which c are correct: 1 - C(n-c, k) / C(n, k) (Chen et al. 2021).

    >>> pass_at_k(4, 1, 1), pass_at_k(4, 1, 2), pass_at_k(4, 0, 4), pass_at_k(4, 3, 2)
    (0.25, 0.5, 0.0, 1.0)
    """
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass_at_k needs 0 <= c <= n and 1 <= k <= n; got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    # the product form of C(n-c, k) / C(n, k), stable for large n
    return 1.0 - math.prod((n - c - i) / (n - i) for i in range(k))


def answer_entropy(answers: Sequence[str]) -> float:
    """Entropy in nats of the empirical distribution of answers (0 when all are the same).

    >>> round(answer_entropy(["a", "a", "b", "b"]), 6), answer_entropy(["a", "a"])
    (0.693147, 0.0)
    """
    if not answers:
        return 0.0
    counts = Counter(answers)
    n = len(answers)
    return max(0.0, -sum(c / n * math.log(c / n) for c in counts.values()))  # max: no -0.0


def distinct_correct(answers: Sequence[str], correct: Sequence[bool]) -> int:
    """Number of different answers among the correct ones.

    >>> distinct_correct(["3*5+7", "7+3*5", "3*5+7", "3+5"], [True, True, True, False])
    2
    """
    return len({a for a, ok in zip(answers, correct) if ok})


def diversity_metrics(
    samples: Sequence[tuple[Sequence[str], Sequence[bool]]], ks: Sequence[int] = (1, 2, 4, 8, 16)
) -> dict[str, float]:
    """Mean over prompts of accuracy, distinct correct answers, answer entropy (over all samples and over the
    correct ones) and pass@k for each k not above the number of samples. `samples`: one
    (answers, correct) pair per prompt, all with the same number of samples n."""
    if not samples:
        raise ValueError("diversity_metrics needs at least one prompt's samples")
    n = len(samples[0][0])
    if any(len(a) != n or len(c) != n for a, c in samples):
        raise ValueError("diversity_metrics: every prompt needs the same number of samples and correct flags")
    per_prompt = {
        "accuracy": [sum(c) / n for _, c in samples],
        "distinct_correct": [distinct_correct(a, c) for a, c in samples],
        "answer_entropy": [answer_entropy(a) for a, _ in samples],
        "correct_answer_entropy": [answer_entropy([x for x, ok in zip(a, c) if ok]) for a, c in samples],
    }
    for k in ks:
        if k <= n:
            per_prompt[f"pass@{k}"] = [pass_at_k(n, sum(c), k) for _, c in samples]
    return {name: sum(values) / len(values) for name, values in per_prompt.items()}
