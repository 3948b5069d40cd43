"""Pure tensor math for reward-based learning: tensors and scalars in, tensors or (loss, metrics) out.

Nothing here knows about models, tokenizers, configs, optimizers or ranks (docs/architecture.md#package-layout).
"""

from rewardlab.algos.advantages import (
    ADVANTAGES,
    Estimator,
    dr_grpo_advantages,
    gae,
    group_stats,
    grpo_advantages,
    nonzero_variance_groups,
    overlong_penalty,
    per_token_rewards,
    reinforce_pp,
    rloo_advantages,
    score_on_last_token,
    whiten,
)
from rewardlab.algos.aggregation import (
    AGGREGATIONS,
    LOSS_TYPES,
    seq_mean_token_mean,
    seq_mean_token_sum_norm,
    token_mean,
)
from rewardlab.algos.distill import (
    distill_loss,
    entropy_weights,
    generalized_jsd,
    kl_divergence,
    opd_advantages,
    reopold_advantages,
    rlsd_advantages,
    sampled_token_distill_loss,
    srpo_route,
    topk_tail_logprobs,
)
from rewardlab.algos.flowrl import (
    FLOWRL_IMPORTANCE,
    flowrl_importance_weights,
    flowrl_loss,
    masked_token_mean,
)
from rewardlab.algos.kl import KL_KINDS, AdaptiveKLController, FixedKLController, kl_estimate
from rewardlab.algos.mismatch import IS_MODES, mismatch_metrics, mismatch_weights
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
    "IS_MODES",
    "mismatch_metrics",
    "mismatch_weights",
    "ADVANTAGES",
    "Estimator",
    "AGGREGATIONS",
    "FLOWRL_IMPORTANCE",
    "KL_KINDS",
    "LOSS_TYPES",
    "POLICY_LOSSES",
    "PREFERENCE_LOSS_TYPES",
    "AdaptiveKLController",
    "FixedKLController",
    "bradley_terry_loss",
    "distill_loss",
    "dr_grpo_advantages",
    "entropy_weights",
    "explained_variance",
    "flowrl_importance_weights",
    "flowrl_loss",
    "gae",
    "generalized_jsd",
    "group_stats",
    "grpo_advantages",
    "gspo_loss",
    "kl_divergence",
    "kl_estimate",
    "kto_loss",
    "kto_reference_point",
    "masked_token_mean",
    "nonzero_variance_groups",
    "opd_advantages",
    "reopold_advantages",
    "overlong_penalty",
    "per_token_rewards",
    "ppo_clip_loss",
    "preference_loss",
    "reinforce_pp",
    "rloo_advantages",
    "score_on_last_token",
    "rlsd_advantages",
    "sampled_token_distill_loss",
    "seq_mean_token_mean",
    "seq_mean_token_sum_norm",
    "srpo_route",
    "token_mean",
    "topk_tail_logprobs",
    "value_loss",
    "whiten",
]
