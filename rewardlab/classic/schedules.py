"""Step-indexed schedules (exploration epsilon, learning-rate annealing)."""

from __future__ import annotations


def linear_schedule(start: float, end: float, duration: int, step: int) -> float:
    """`start` at step 0, moving linearly to `end` at `duration`, then held at `end`."""
    if duration <= 0:
        return end
    fraction = min(step / duration, 1.0)
    return start + fraction * (end - start)
