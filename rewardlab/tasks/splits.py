"""Train / tune / test splits shared by the built-in tasks.

Every task maps a problem to a *canonical form* (a string that two presentations of the same problem
share: "3+5" and "5+3", or the prompts "qdk:" and "kdq:") and assigns it to a split by a hash of that
string, so no reordering of a test problem is ever trained on, whatever the seeds:

    test   hash < test_fraction                                  report results here
    tune   test_fraction <= hash < test_fraction + tune_fraction choose hyperparameters, early stops, rules
    train  the rest

Training draws repeat problems freely. An evaluation set (tune or test) holds distinct canonical problems:
drawn without replacement from the whole split when the split is small enough to list, by rejecting
repeats otherwise. A split smaller than the set asked for gives all of its problems, with a warning.
"""

from __future__ import annotations

import hashlib
import heapq
import logging
import math
import random
from collections.abc import Callable, Hashable, Sequence
from typing import TypeVar

SPLITS = ("train", "tune", "test")
EVAL_SPLITS = ("tune", "test")

log = logging.getLogger(__name__)
K = TypeVar("K", bound=Hashable)


def check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split must be 'train', 'tune' or 'test', got {split!r}")


def check_fractions(task: str, tune_fraction: float, test_fraction: float) -> None:
    if not 0 < test_fraction < 1 or not 0 < tune_fraction < 1 or test_fraction + tune_fraction >= 1:
        raise ValueError(
            f"{task}: need 0 < heldout_fraction (test), 0 < tune_fraction and heldout_fraction + tune_fraction < 1, "
            f"got {test_fraction} and {tune_fraction}"
        )


def split_of(key: str, tune_fraction: float, test_fraction: float) -> str:
    """The split of a canonical form: "train", "tune" or "test" (a hash of the string, see the module doc)."""
    u = int.from_bytes(hashlib.blake2b(key.encode(), digest_size=4).digest(), "little") / 2**32
    if u < test_fraction:
        return "test"
    if u < test_fraction + tune_fraction:
        return "tune"
    return "train"


def sample_without_replacement(pool: Sequence[tuple[K, float]], n: int, rng: random.Random, what: str) -> list[K]:
    """n distinct keys of `pool` ((key, weight) pairs), each next one drawn with probability proportional
    to its weight among those left (Efraimidis-Spirakis keys). A pool smaller than n gives all its keys, in
    a weighted random order, and a warning."""
    if n > len(pool):
        log.warning("%s holds only %d distinct problems, fewer than the %d asked for: using all %d", what, len(pool), n, len(pool))
    ranked = heapq.nlargest(min(n, len(pool)), pool, key=lambda kw: math.log(1.0 - rng.random()) / kw[1])
    return [k for k, _ in ranked]


def draw_distinct(draw: Callable[[], tuple[K, object] | None], n: int, what: str, patience: int | None = None) -> list:
    """n items with distinct keys by rejection: `draw()` gives (key, item), or None for a draw outside the
    split; a key seen before is skipped. Raises when `patience` draws in a row bring nothing new (the split
    is then about as small as what was found)."""
    patience = patience if patience is not None else 20_000 + 50 * n
    seen: set = set()
    items: list = []
    misses = 0
    while len(items) < n:
        drawn = draw()
        if drawn is None or drawn[0] in seen:
            misses += 1
            if misses > patience:
                raise ValueError(
                    f"{what}: found only {len(items)} distinct problems after {patience} draws in a row brought nothing "
                    f"new, fewer than the {n} asked for; ask for fewer, or widen the task's options"
                )
            continue
        misses = 0
        seen.add(drawn[0])
        items.append(drawn[1])
    return items
