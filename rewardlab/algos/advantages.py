"""Advantage estimators and the reward shaping that feeds them.

Every estimator is an entry of ADVANTAGES with one token-level signature:

    ADVANTAGES[name](token_rewards [B,T], mask [B,T], group_index [B], values=None, **opts)
        -> (advantages [B,T], returns [B,T])

`token_rewards` holds each completion's score on its last valid token (score_on_last_token); for the
per-token estimators (`token_level`) the driver also puts the KL penalty -beta KL_t on every token
(per_token_rewards). `group_index[i]` is the prompt row i was sampled from, an id in 0..num_groups-1.
`values` is the critic's estimate for the estimators that say `needs_values`. `opts` are the config
settings the entry names in `options`.

Outcome level (grpo, dr_grpo, rloo): one scalar per completion, the row's summed reward compared within
its group, broadcast to every token of the row (the loss mask decides which tokens count). Groups may have
different sizes and rows may come in any order; every per-group statistic is computed with `index_add_` /
`scatter_reduce`, never a Python loop over rows. The [B] -> [B] functions (grpo_advantages, ...) are
exported for direct use.

Token level (gae, reinforce_pp): a return per token over the valid tokens, masked positions skipped.

Adding an estimator is one `ADVANTAGES.add(name, Estimator(...))` (or `outcome_estimator`) and a test;
the driver does not change. Math: docs/algorithms.md#outcome-level-advantages and
docs/algorithms.md#per-token-advantages.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from rewardlab.algos.kl import kl_estimate
from rewardlab.registry import Registry


@dataclass(frozen=True)
class Estimator:
    """An entry of ADVANTAGES: `compute(token_rewards, mask, group_index, values, **opts) -> (advantages, returns)`."""

    compute: Callable[..., tuple[torch.Tensor, torch.Tensor]]
    token_level: bool = False  # a reward per token: the KL penalty is part of the reward, not of the loss
    needs_values: bool = False  # reads a critic's values (the loop builds and trains one)
    options: tuple[str, ...] = ()  # the config settings passed as keyword arguments

    def __call__(self, token_rewards: torch.Tensor, mask: torch.Tensor, group_index: torch.Tensor,
                 values: torch.Tensor | None = None, **opts) -> tuple[torch.Tensor, torch.Tensor]:
        if token_rewards.dim() != 2 or mask.shape != token_rewards.shape:
            raise ValueError(f"token_rewards and mask must both be [B,T]; got {tuple(token_rewards.shape)} and {tuple(mask.shape)}")
        if self.needs_values and values is None:
            raise ValueError("this advantage estimator needs the critic's values [B,T]")
        return self.compute(token_rewards, mask, group_index, values, **opts)


ADVANTAGES: Registry[Estimator] = Registry("advantage estimator")

GRPO_SCALE_REWARDS = ("group", "batch", "none")


# ---------------------------------------------------------------- per-group statistics


def _check_grouped(rewards: torch.Tensor, group_index: torch.Tensor) -> torch.Tensor:
    """Validate shapes and return rewards as a float tensor."""
    if rewards.dim() != 1 or group_index.shape != rewards.shape:
        raise ValueError(
            f"rewards and group_index must both be 1-D of the same length [B]; got rewards "
            f"{tuple(rewards.shape)} and group_index {tuple(group_index.shape)}"
        )
    if group_index.is_floating_point() or group_index.is_complex() or group_index.dtype == torch.bool:
        raise ValueError(
            f"group_index must be an integer tensor of prompt ids, got dtype {group_index.dtype}"
        )
    if group_index.numel() and int(group_index.min()) < 0:
        raise ValueError("group_index must hold prompt ids >= 0")
    return rewards if rewards.is_floating_point() else rewards.to(torch.get_default_dtype())


def _num_groups(group_index: torch.Tensor) -> int:
    return int(group_index.max()) + 1 if group_index.numel() else 0


def _group_sum(values: torch.Tensor, group_index: torch.Tensor, num_groups: int) -> torch.Tensor:
    """[B] values -> [num_groups] sums."""
    return values.new_zeros(num_groups).index_add_(0, group_index, values)


def _group_moments(
    rewards: torch.Tensor, group_index: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-row group mean, unbiased group std and group size, each [B].

    Two passes (mean first, then squared deviations) rather than E[x^2] - E[x]^2, which
    cancels catastrophically when rewards are large and nearly equal. A group of size 1 has
    std 0 (its n-1 is clamped to 1), so it can never produce a NaN.
    """
    num_groups = _num_groups(group_index)
    counts = _group_sum(torch.ones_like(rewards), group_index, num_groups)
    group_mean = _group_sum(rewards, group_index, num_groups) / counts.clamp(min=1)
    centered = rewards - group_mean[group_index]
    group_var = _group_sum(centered.square(), group_index, num_groups) / (counts - 1).clamp(min=1)
    return group_mean[group_index], group_var.sqrt()[group_index], counts[group_index]


def _group_extremes(
    rewards: torch.Tensor, group_index: torch.Tensor, num_groups: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-group (max, min, size), each [num_groups]; empty groups have size 0."""
    counts = _group_sum(torch.ones_like(rewards), group_index, num_groups)
    group_max = rewards.new_zeros(num_groups).scatter_reduce(
        0, group_index, rewards, reduce="amax", include_self=False
    )
    group_min = rewards.new_zeros(num_groups).scatter_reduce(
        0, group_index, rewards, reduce="amin", include_self=False
    )
    return group_max, group_min, counts


def group_stats(rewards: torch.Tensor, group_index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Group statistics broadcast back to rows.

    rewards [B] float, group_index [B] long -> (mean_per_row [B], std_per_row [B] (unbiased),
    zero_variance_group_fraction). The fraction is over non-empty groups, and a group counts
    as zero-variance when all its rewards are exactly equal (size-1 groups included): such a
    group has zero advantage everywhere and teaches nothing, which is worth logging.
    """
    rewards = _check_grouped(rewards, group_index)
    mean, std, _ = _group_moments(rewards, group_index)
    group_max, group_min, counts = _group_extremes(rewards, group_index, _num_groups(group_index))
    present = counts > 0
    flat = (group_max == group_min) & present
    fraction = float(flat.sum()) / max(int(present.sum()), 1)
    return mean, std, fraction


def nonzero_variance_groups(
    rewards: torch.Tensor, group_index: torch.Tensor, num_groups: int | None = None
) -> torch.Tensor:
    """bool [num_groups]: True for groups whose rewards are not all equal (DAPO dynamic sampling).

    Exact comparison of max and min rather than std > threshold: a float mean of identical
    values can leave a ~1e-17 residual, and whether a group is informative should not depend on
    rounding. Empty groups (ids absent from group_index) are False. `num_groups` defaults to
    max(group_index) + 1; pass it when trailing prompts may have no rows.
    """
    rewards = _check_grouped(rewards, group_index)
    if num_groups is None:
        num_groups = _num_groups(group_index)
    group_max, group_min, counts = _group_extremes(rewards, group_index, num_groups)
    return (group_max != group_min) & (counts > 0)


# ---------------------------------------------------------------- outcome-level estimators


def grpo_advantages(
    rewards: torch.Tensor, group_index: torch.Tensor, *, scale_rewards: str = "group", eps: float = 1e-4
) -> torch.Tensor:
    """GRPO: (r - group mean) / (std + eps). [B], [B] -> [B].

    scale_rewards "group" divides by the unbiased std of the row's group (TRL's default),
    "batch" by the unbiased std of the whole batch (the centering stays per group), "none"
    does not divide (that is Dr. GRPO). eps keeps zero-variance groups at exactly 0.
    """
    if scale_rewards not in GRPO_SCALE_REWARDS:
        raise ValueError(
            f"grpo scale_rewards must be one of {', '.join(GRPO_SCALE_REWARDS)}; got {scale_rewards!r}"
        )
    rewards = _check_grouped(rewards, group_index)
    mean, std, _ = _group_moments(rewards, group_index)
    centered = rewards - mean
    if scale_rewards == "group":
        return centered / (std + eps)
    if scale_rewards == "batch":
        batch_std = rewards.std() if rewards.numel() > 1 else rewards.new_zeros(())
        return centered / (batch_std + eps)
    return centered


def dr_grpo_advantages(rewards: torch.Tensor, group_index: torch.Tensor) -> torch.Tensor:
    """Dr. GRPO: r - group mean, no std division (it biases toward easy/hard prompts). [B] -> [B]."""
    rewards = _check_grouped(rewards, group_index)
    mean, _, _ = _group_moments(rewards, group_index)
    return rewards - mean


def rloo_advantages(rewards: torch.Tensor, group_index: torch.Tensor) -> torch.Tensor:
    """RLOO: r_i - mean of the other samples of its group = G/(G-1) (r_i - mean). [B] -> [B].

    A group of size 1 has no "others"; its advantage is 0 rather than a division by zero.
    """
    rewards = _check_grouped(rewards, group_index)
    mean, _, size = _group_moments(rewards, group_index)
    scale = torch.where(size > 1, size / (size - 1).clamp(min=1), torch.zeros_like(size))
    return scale * (rewards - mean)


def outcome_estimator(fn: Callable[..., torch.Tensor], *options: str) -> Estimator:
    """An Estimator from an outcome-level `fn(rewards [B], group_index [B], **opts) -> [B]`: the row's reward is
    the sum of its token rewards, and the row's advantage is broadcast to all its tokens."""

    def compute(token_rewards, mask, group_index, values, **opts):
        advantages = fn(token_rewards.sum(dim=1), group_index, **opts).unsqueeze(1).expand_as(token_rewards)
        return advantages, advantages

    return Estimator(compute, options=options)


ADVANTAGES.add("grpo", outcome_estimator(grpo_advantages, "scale_rewards"))
ADVANTAGES.add("dr_grpo", outcome_estimator(dr_grpo_advantages))
ADVANTAGES.add("rloo", outcome_estimator(rloo_advantages))


# ---------------------------------------------------------------- token-level estimators


def whiten(x: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True, eps: float = 1e-8) -> torch.Tensor:
    """Normalise x to zero mean, unit variance over the valid tokens of the whole batch.

    x [B,T], mask [B,T] -> [B,T], 0 at masked positions. The variance is unbiased (n-1), as in
    Huang et al.'s PPO details. shift_mean=False keeps the original mean (only rescales).
    Masked entries never enter the statistics, so garbage (even NaN) there is harmless.
    """
    valid = mask.bool()
    n_valid = valid.sum()
    mean = torch.where(valid, x, 0.0).sum() / n_valid.clamp(min=1)
    centered = torch.where(valid, x - mean, 0.0)
    var = centered.square().sum() / (n_valid - 1).clamp(min=1)
    out = centered * torch.rsqrt(var + eps)
    if not shift_mean:
        out = out + mean
    return torch.where(valid, out, 0.0)


def gae(
    token_rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float, lam: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation over the valid tokens of each row.

    token_rewards [B,T], values [B,T], mask [B,T] -> (advantages [B,T], returns [B,T]).
    delta_t = r_t + gamma V_next - V_t; A_t = delta_t + gamma lam A_next; returns = A + V,
    taken before any whitening (whiten the advantages afterwards if you want to).

    Masked positions are skipped as if they were not there: "next" means the next VALID token,
    and V after the last valid token is 0. So a hole in the mask (environment text in a
    multi-turn episode) neither discounts nor bootstraps, and whatever the values or rewards
    hold at masked positions cannot change the result. Put rewards on valid tokens. Both
    outputs are 0 at masked positions and carry no gradient (they are regression targets).
    """
    valid = mask.bool()
    rewards = torch.where(valid, token_rewards.detach(), 0.0)
    values = torch.where(valid, values.detach(), 0.0)
    advantages = torch.zeros_like(rewards)
    next_value = rewards.new_zeros(rewards.shape[0])
    next_advantage = rewards.new_zeros(rewards.shape[0])
    # A reverse scan over time: T is at most a few thousand, and every step is one vector op
    # over the batch. Rows are never looped over.
    for t in reversed(range(rewards.shape[1])):
        is_valid = valid[:, t]
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        advantage_t = delta + gamma * lam * next_advantage
        advantages[:, t] = torch.where(is_valid, advantage_t, 0.0)
        next_value = torch.where(is_valid, values[:, t], next_value)
        next_advantage = torch.where(is_valid, advantage_t, next_advantage)
    returns = torch.where(valid, advantages + values, 0.0)
    return advantages, returns


def reinforce_pp(
    token_rewards: torch.Tensor, mask: torch.Tensor, gamma: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """REINFORCE++: discounted return-to-go, whitened over all valid tokens of the batch.

    token_rewards [B,T], mask [B,T] -> (advantages [B,T], returns [B,T]); 0 at masked positions.
    The return-to-go is GAE with no critic (V = 0) and lam = 1; holes in the mask are skipped
    the same way. Whitening across the whole batch replaces the critic as the baseline.
    """
    _, returns = gae(token_rewards, torch.zeros_like(token_rewards), mask, gamma, lam=1.0)
    return whiten(returns, mask), returns


def _gae_whitened(token_rewards, mask, group_index, values, gamma: float, lam: float):
    """PPO: GAE with the critic's values, the advantages whitened over the batch (the returns are not)."""
    advantages, returns = gae(token_rewards, values, mask, gamma, lam)
    return whiten(advantages, mask), returns


ADVANTAGES.add("gae", Estimator(_gae_whitened, token_level=True, needs_values=True, options=("gamma", "lam")))
ADVANTAGES.add("reinforce_pp", Estimator(lambda r, mask, index, values, gamma: reinforce_pp(r, mask, gamma),
                                         token_level=True, options=("gamma",)))


# ---------------------------------------------------------------- reward shaping


def score_on_last_token(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """scores [B] -> [B,T] token rewards: each score on its row's last valid token, 0 elsewhere. A row with no
    valid token (a truncated completion masked out) keeps its score on the last position, so an outcome
    estimator still counts it in its group; a token-level one ignores it there."""
    valid = mask.bool()
    positions = torch.arange(valid.shape[1], device=valid.device).expand_as(valid)
    last = torch.where(valid, positions, -1).max(dim=1).values
    last = torch.where(last >= 0, last, valid.shape[1] - 1)
    rewards = torch.zeros(valid.shape, dtype=scores.dtype if scores.is_floating_point() else torch.get_default_dtype(),
                          device=valid.device)
    return rewards.scatter(1, last.unsqueeze(1), scores.detach().to(rewards.dtype).unsqueeze(1))


def per_token_rewards(
    scores: torch.Tensor,
    logp_old: torch.Tensor,
    ref_logp: torch.Tensor,
    mask: torch.Tensor,
    beta: float,
    kl_kind: str = "k1",
) -> tuple[torch.Tensor, torch.Tensor]:
    """PPO / REINFORCE++ reward: r_t = -beta KL_t, plus the score on the last valid token.

    scores [B], logp_old [B,T] (the sampling policy), ref_logp [B,T], mask [B,T]
    -> (rewards [B,T], kl [B,T]), both 0 at masked positions and detached: a reward is a
    constant of the policy update, and a graph hanging off it would leak gradient into the
    advantages. Rows with no valid token get no score.
    """
    valid = mask.bool()
    kl = torch.where(valid, kl_estimate(logp_old.detach(), ref_logp.detach(), kind=kl_kind), 0.0)
    rewards = -beta * kl
    positions = torch.arange(valid.shape[1], device=valid.device).expand_as(valid)
    last_valid = torch.where(valid, positions, -1).max(dim=1).values
    has_tokens = last_valid >= 0
    score = torch.where(has_tokens, scores.detach().to(rewards.dtype), 0.0)
    rewards = rewards.scatter_add(1, last_valid.clamp(min=0).unsqueeze(1), score.unsqueeze(1))
    return rewards, kl


def overlong_penalty(lengths: torch.Tensor, max_len: int, cache_len: int) -> torch.Tensor:
    """DAPO soft overlong punishment. lengths [B] (response tokens) -> penalty [B] in [-1, 0].

    0 up to max_len - cache_len, then a linear ramp ((max_len - cache_len) - |y|) / cache_len
    reaching -1 at max_len, and -1 beyond. Add it to the task reward.
    """
    if not 0 < cache_len <= max_len:
        raise ValueError(
            f"overlong_penalty needs 0 < cache_len <= max_len; got cache_len={cache_len}, max_len={max_len}"
        )
    lengths = lengths.to(torch.get_default_dtype()) if not lengths.is_floating_point() else lengths
    ramp = ((max_len - cache_len) - lengths) / cache_len
    return ramp.clamp(min=-1.0, max=0.0)
