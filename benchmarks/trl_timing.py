"""Timing TRL trainers step by step, shared by the benchmarks that run TRL beside rewardlab."""

from __future__ import annotations

import time


def step_timer():
    """A TrainerCallback whose `.times` holds the wall time of each optimizer step, from on_step_begin to
    on_step_end (model loading, logging and the dataloader's fetch fall outside). transformers is imported
    here, so the scripts stay importable without it."""
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def __init__(self) -> None:
            self.times: list[float] = []

        def on_step_begin(self, *_, **__):
            self.start = time.perf_counter()

        def on_step_end(self, *_, **__):
            self.times.append(time.perf_counter() - self.start)

    return StepTimer()
