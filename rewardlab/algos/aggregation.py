"""How per-token losses become one scalar (docs/algorithms.md#loss-aggregation).

    AGGREGATIONS[name](per_token_loss [B,T], mask [B,T], max_len=None) -> scalar

The choice decides how much each token weighs, and so whether long answers are favoured:
    token_mean               every valid token of the batch weighs the same (DAPO)
    seq_mean_token_mean      every sequence weighs the same; long ones spread it thinner (GRPO)
    seq_mean_token_sum_norm  a constant B * max_len divisor, so no length bias (Dr. GRPO)
All three take max_len so a trainer can call any of them the same way; only the last uses it.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from rewardlab.registry import Registry

AGGREGATIONS: Registry[Callable[..., torch.Tensor]] = Registry("loss aggregation")

# TRL's loss_type names (TRL 1.16) for the online loop, and the aggregation each one is. bnpo normalises by the
# tokens of the local batch and dapo by those of the global accumulated batch: the same in one process. cispo
# and sapo are also a policy loss: LOSS_TYPE_POLICY_LOSSES. (TRL's luspo and vespo have no equivalent here.)
LOSS_TYPES = {"grpo": "seq_mean_token_mean", "dr_grpo": "seq_mean_token_sum_norm", "dapo": "token_mean", "bnpo": "token_mean",
              "cispo": "token_mean", "sapo": "seq_mean_token_mean"}
# The policy loss a TRL loss_type implies (the others are ppo_clip's, or gspo's with importance_sampling_level=sequence).
LOSS_TYPE_POLICY_LOSSES = {"cispo": "cispo", "sapo": "sapo"}


def _masked(per_token_loss: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    # where(), not multiplication: inf/NaN at a padded position times 0 is still NaN.
    return torch.where(mask.bool(), per_token_loss, 0.0)


@AGGREGATIONS.register("token_mean")
def token_mean(per_token_loss: torch.Tensor, mask: torch.Tensor, max_len: int | None = None) -> torch.Tensor:
    """sum(m l) / sum(m). max_len is ignored."""
    return _masked(per_token_loss, mask).sum() / mask.bool().sum().clamp(min=1)


@AGGREGATIONS.register("seq_mean_token_mean")
def seq_mean_token_mean(
    per_token_loss: torch.Tensor, mask: torch.Tensor, max_len: int | None = None
) -> torch.Tensor:
    """mean over rows of (sum_t m l / sum_t m). A row with no valid token counts as 0. max_len is ignored."""
    per_sequence = _masked(per_token_loss, mask).sum(dim=1) / mask.bool().sum(dim=1).clamp(min=1)
    return per_sequence.mean()


@AGGREGATIONS.register("seq_mean_token_sum_norm")
def seq_mean_token_sum_norm(
    per_token_loss: torch.Tensor, mask: torch.Tensor, max_len: int | None = None
) -> torch.Tensor:
    """sum(m l) / (B * max_len); max_len defaults to T = mask.shape[1].

    Pass the configured maximum completion length so the divisor does not change with the
    padded width of each batch.
    """
    divisor_len = mask.shape[1] if max_len is None else max_len
    return _masked(per_token_loss, mask).sum() / max(mask.shape[0] * divisor_len, 1)
