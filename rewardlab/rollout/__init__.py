"""Rollout: engines that sample completions, and the Rollout they return."""

from ..data.collate import left_pad
from .engines import ENGINES
from .hf_engine import HFEngine, sample_tokens
from .ops import concat_rollouts, select_rows
from .types import Engine, Rollout, SamplingParams

__all__ = ["ENGINES", "Engine", "HFEngine", "Rollout", "SamplingParams", "concat_rollouts", "left_pad", "select_rows", "sample_tokens"]
