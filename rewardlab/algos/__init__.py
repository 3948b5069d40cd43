"""Pure tensor math for reward-based learning: tensors and scalars in, tensors or (loss, metrics) out.

Nothing here knows about models, tokenizers, configs, optimizers or ranks (DESIGN.md).
"""

from rewardlab.algos.advantages import (
    ADVANTAGES,
    dr_grpo_advantages,
    gae,
    group_stats,
    grpo_advantages,
    nonzero_variance_groups,
    overlong_penalty,
    per_token_rewards,
    reinforce_pp,
    rloo_advantages,
    whiten,
)
from rewardlab.algos.aggregation import AGGREGATIONS, seq_mean_token_mean, seq_mean_token_sum_norm, token_mean
from rewardlab.algos.kl import KL_KINDS, AdaptiveKLController, FixedKLController, kl_estimate
from rewardlab.algos.policy_losses import POLICY_LOSSES, gspo_loss, ppo_clip_loss
from rewardlab.algos.preference import (
    PREFERENCE_LOSS_TYPES,
    bradley_terry_loss,
    kto_loss,
    kto_reference_point,
    preference_loss,
)
from rewardlab.algos.value import explained_variance, value_loss

__all__ = [
    "ADVANTAGES",
    "AGGREGATIONS",
    "KL_KINDS",
    "POLICY_LOSSES",
    "PREFERENCE_LOSS_TYPES",
    "AdaptiveKLController",
    "FixedKLController",
    "bradley_terry_loss",
    "dr_grpo_advantages",
    "explained_variance",
    "gae",
    "group_stats",
    "grpo_advantages",
    "gspo_loss",
    "kl_estimate",
    "kto_loss",
    "kto_reference_point",
    "nonzero_variance_groups",
    "overlong_penalty",
    "per_token_rewards",
    "ppo_clip_loss",
    "preference_loss",
    "reinforce_pp",
    "rloo_advantages",
    "seq_mean_token_mean",
    "seq_mean_token_sum_norm",
    "token_mean",
    "value_loss",
    "whiten",
]
