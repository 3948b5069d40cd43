"""A user reward function with TRL's signature: it works unchanged in rewardlab.

    rewardlab train grpo --config examples/grpo_arithmetic.yaml \
        "reward_funcs=[rewardlab.tasks:arithmetic_reward, examples.my_reward:short_answer]" "reward_weights=[1.0, 0.1]"
"""


def short_answer(prompts, completions, completion_ids, **kwargs):
    """+1 for answers of at most 4 tokens, 0 otherwise (a toy shaping term)."""
    return [1.0 if len(ids) <= 4 else 0.0 for ids in completion_ids]
