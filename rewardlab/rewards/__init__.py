"""Reward functions (TRL's calling convention), their weighted combination, and a small registry.

    from rewardlab.rewards import REWARDS, RewardFunctions
    rewards = RewardFunctions([REWARDS["math"], REWARDS["format_think_answer"]], weights=[1.0, 0.2])
    total, per_function = rewards(prompts, completions, completion_ids, columns)
"""

from rewardlab.registry import Registry
from rewardlab.rewards.base import RewardError, RewardFn, RewardFunctions, summary_metrics
from rewardlab.rewards.code import (
    ExecutionResult,
    SandboxError,
    SandboxLimits,
    code_reward,
    extract_code,
    make_code_reward,
    resolve_sandbox,
    run_batch,
    run_code,
)
from rewardlab.rewards.format import format_reward, length_penalty
from rewardlab.rewards.math import completion_text, extract_answer, math_equal, math_reward

REWARDS: Registry[RewardFn] = Registry("reward function")

REWARDS.add("math", math_reward)
# Fraction of the row's hidden `tests` the completion's code passes, run in a sandbox (docs/sandbox.md).
REWARDS.add("code", code_reward)
# The final answer sits in <answer>...</answer> at the end of the completion.
REWARDS.add("format_answer_tag", format_reward(r".*<answer>.+?</answer>", name="format_answer_tag"))
# DeepSeek-R1 style: reasoning in <think>, then the answer in <answer>, nothing else.
REWARDS.add(
    "format_think_answer",
    format_reward(r"<think>.*?</think>\s*<answer>.+?</answer>", name="format_think_answer"),
)
# The final answer is boxed, as math models are usually prompted to do.
REWARDS.add("format_boxed", format_reward(r".*\\boxed\{.+\}.*", name="format_boxed"))

__all__ = [
    "REWARDS",
    "ExecutionResult",
    "RewardError",
    "RewardFn",
    "RewardFunctions",
    "SandboxError",
    "SandboxLimits",
    "code_reward",
    "completion_text",
    "extract_answer",
    "extract_code",
    "format_reward",
    "length_penalty",
    "make_code_reward",
    "math_equal",
    "math_reward",
    "resolve_sandbox",
    "run_batch",
    "run_code",
    "summary_metrics",
]
