"""Hand-computed tests for rewardlab.algos: advantages, policy losses, aggregation, KL, value loss.

Each expected number is derived in a comment from the formula in docs/algorithms.md; tolerance is
1e-5 absolute with rtol 0, so a wrong constant cannot pass.
"""

from __future__ import annotations

import math

import pytest
import torch

from rewardlab.algos import (
    ADVANTAGES,
    AGGREGATIONS,
    POLICY_LOSSES,
    AdaptiveKLController,
    Estimator,
    FixedKLController,
    dr_grpo_advantages,
    explained_variance,
    gae,
    group_stats,
    grpo_advantages,
    kl_estimate,
    nonzero_variance_groups,
    overlong_penalty,
    per_token_rewards,
    reinforce_pp,
    rloo_advantages,
    score_on_last_token,
    value_loss,
    whiten,
)
from rewardlab.registry import UnknownNameError

ATOL = 1e-5


def assert_close(actual: torch.Tensor | float, expected, atol: float = ATOL) -> None:
    actual = torch.as_tensor(actual, dtype=torch.float64)
    expected = torch.as_tensor(expected, dtype=torch.float64)
    torch.testing.assert_close(actual, expected, atol=atol, rtol=0)


OUTCOME = {"grpo": grpo_advantages, "dr_grpo": dr_grpo_advantages, "rloo": rloo_advantages}


def t(values, dtype=torch.float32) -> torch.Tensor:
    return torch.tensor(values, dtype=dtype)


# ================================================================ registries


def test_registries_hold_exactly_the_tested_entries():
    # A new entry must come with its own hand-computed test; this fails until it does.
    assert ADVANTAGES.names() == ["dr_grpo", "gae", "grpo", "reinforce_pp", "rloo"]
    assert POLICY_LOSSES.names() == ["cispo", "gspo", "ppo_clip", "sapo"]
    assert AGGREGATIONS.names() == ["seq_mean_token_mean", "seq_mean_token_sum_norm", "token_mean"]


@pytest.mark.parametrize(
    "registry, typo, listing",
    [
        (ADVANTAGES, "gpro", "dr_grpo, gae, grpo, reinforce_pp, rloo"),
        (POLICY_LOSSES, "ppo", "cispo, gspo, ppo_clip, sapo"),
        (AGGREGATIONS, "mean", "seq_mean_token_mean, seq_mean_token_sum_norm, token_mean"),
    ],
)
def test_unknown_registry_name_lists_valid_names(registry, typo, listing):
    with pytest.raises(UnknownNameError) as excinfo:
        registry[typo]
    assert listing in str(excinfo.value)
    assert isinstance(excinfo.value, KeyError)


@pytest.mark.parametrize(
    "registry, name", [(ADVANTAGES, "grpo"), (POLICY_LOSSES, "gspo"), (AGGREGATIONS, "token_mean")]
)
def test_duplicate_registration_raises_and_keeps_the_original(registry, name):
    original = registry[name]
    with pytest.raises(ValueError, match="already registered"):
        registry.register(name)(lambda *args, **kwargs: None)
    assert registry[name] is original


# ================================================================ outcome-level advantages


def test_grpo_worked_example_unbiased_std():
    # [1, 0, 0, 0]: mean 0.25, unbiased std sqrt((0.75^2 + 3 * 0.25^2) / 3) = sqrt(0.25) = 0.5.
    # eps 0 -> [0.75, -0.25, -0.25, -0.25] / 0.5 = [1.5, -0.5, -0.5, -0.5].
    rewards, groups = t([1.0, 0.0, 0.0, 0.0]), torch.zeros(4, dtype=torch.long)
    assert_close(OUTCOME["grpo"](rewards, groups, eps=0.0), [1.5, -0.5, -0.5, -0.5])
    # default eps 1e-4: 0.75 / 0.5001 = 1.49970006, -0.25 / 0.5001 = -0.49990002
    assert_close(OUTCOME["grpo"](rewards, groups), [1.4997001, -0.4999000, -0.4999000, -0.4999000])


def test_grpo_interleaved_groups_of_different_sizes():
    # group 0 = rows 0,2,4,5 = [1,0,0,0] -> [1.5,-0.5,-0.5,-0.5] as above;
    # group 1 = rows 1,3 = [3,5]: mean 4, unbiased std sqrt((1 + 1) / 1) = sqrt(2)
    # -> -1/sqrt(2) = -0.7071068 and +0.7071068.
    rewards = t([1.0, 3.0, 0.0, 5.0, 0.0, 0.0])
    groups = torch.tensor([0, 1, 0, 1, 0, 0])
    expected = [1.5, -0.7071068, -0.5, 0.7071068, -0.5, -0.5]
    assert_close(OUTCOME["grpo"](rewards, groups, eps=0.0), expected)


def test_grpo_scale_rewards_batch_and_none():
    # groups [1, 0] and [2, 2]: group-centred [0.5, -0.5, 0, 0].
    # batch: unbiased std of [1, 0, 2, 2] = sqrt(((−.25)^2 + 1.25^2 + .75^2 + .75^2) / 3)
    #      = sqrt(2.75 / 3) = 0.9574271 -> 0.5 / 0.9574271 = 0.5222330.
    rewards, groups = t([1.0, 0.0, 2.0, 2.0]), torch.tensor([0, 0, 1, 1])
    assert_close(
        OUTCOME["grpo"](rewards, groups, scale_rewards="batch", eps=0.0), [0.5222330, -0.5222330, 0, 0]
    )
    assert_close(OUTCOME["grpo"](rewards, groups, scale_rewards="none"), [0.5, -0.5, 0.0, 0.0])
    with pytest.raises(ValueError, match="group, batch, none"):
        OUTCOME["grpo"](rewards, groups, scale_rewards="std")


def test_dr_grpo_worked_example():
    # r - mean: [1, 0, 0, 0] - 0.25 = [0.75, -0.25, -0.25, -0.25]
    assert_close(
        OUTCOME["dr_grpo"](t([1.0, 0.0, 0.0, 0.0]), torch.zeros(4, dtype=torch.long)),
        [0.75, -0.25, -0.25, -0.25],
    )


def test_rloo_worked_example_and_singleton():
    # G/(G-1) (r - mean) = 4/3 * [0.75, -0.25, ...] = [1, -1/3, -1/3, -1/3]
    # (= r_i minus the mean of the other three: 1 - 0, 0 - 1/3). Row 4 is alone in group 1: 0.
    rewards, groups = t([1.0, 0.0, 0.0, 0.0, 7.0]), torch.tensor([0, 0, 0, 0, 1])
    assert_close(OUTCOME["rloo"](rewards, groups), [1.0, -1 / 3, -1 / 3, -1 / 3, 0.0])


@pytest.mark.parametrize("name", ["grpo", "dr_grpo", "rloo"])
def test_zero_variance_and_singleton_groups_give_zero_not_nan(name):
    rewards = t([1.0, 1.0, 1.0, 0.3, 5.0])  # group 0 all equal, group 1 has one row, group 2 one row
    groups = torch.tensor([0, 0, 0, 1, 2])
    advantages = OUTCOME[name](rewards, groups)
    assert torch.isfinite(advantages).all()
    assert_close(advantages, [0.0] * 5)


def test_grpo_loop_reference_matches_vectorised_on_shuffled_groups():
    generator = torch.Generator().manual_seed(0)
    sizes = [1, 2, 3, 4, 5, 6, 8, 8, 3]
    groups = torch.cat([torch.full((size,), gid) for gid, size in enumerate(sizes)])
    groups = groups[torch.randperm(len(groups), generator=generator)]
    rewards = torch.randn(len(groups), generator=generator, dtype=torch.float64)
    rewards[groups == 3] = 0.5  # one zero-variance group too

    eps = 1e-4
    expected_grpo, expected_rloo = [], []
    for i in range(len(rewards)):  # the slow obvious way: gather each row's group with a loop
        members = [float(rewards[j]) for j in range(len(rewards)) if int(groups[j]) == int(groups[i])]
        mean = sum(members) / len(members)
        std = (
            math.sqrt(sum((x - mean) ** 2 for x in members) / (len(members) - 1)) if len(members) > 1 else 0.0
        )
        expected_grpo.append((float(rewards[i]) - mean) / (std + eps))
        if len(members) > 1:  # RLOO: the row's reward minus the mean of the OTHER rows of its group
            expected_rloo.append(float(rewards[i]) - (sum(members) - float(rewards[i])) / (len(members) - 1))
        else:
            expected_rloo.append(0.0)

    assert_close(OUTCOME["grpo"](rewards, groups, eps=eps), expected_grpo)
    assert_close(OUTCOME["rloo"](rewards, groups), expected_rloo)


def test_group_stats():
    # group 0 [1,0,0,0]: mean .25, std .5; group 1 [2,2]: mean 2, std 0; group 2 [7]: mean 7, std 0.
    # zero-variance groups: 1 and 2 (a singleton teaches nothing either) -> 2 / 3.
    rewards = t([2.0, 1.0, 0.0, 7.0, 0.0, 2.0, 0.0])
    groups = torch.tensor([1, 0, 0, 2, 0, 1, 0])
    mean, std, zero_fraction = group_stats(rewards, groups)
    assert_close(mean, [2.0, 0.25, 0.25, 7.0, 0.25, 2.0, 0.25])
    assert_close(std, [0.0, 0.5, 0.5, 0.0, 0.5, 0.0, 0.5])
    assert zero_fraction == pytest.approx(2 / 3, abs=1e-12)
    assert isinstance(zero_fraction, float)


def test_nonzero_variance_groups():
    rewards = t([2.0, 1.0, 0.0, 7.0, 0.0, 2.0, 0.0])
    groups = torch.tensor([1, 0, 0, 2, 0, 1, 0])
    assert nonzero_variance_groups(rewards, groups).tolist() == [True, False, False]
    # an explicit num_groups covers a trailing prompt with no rows: empty -> False
    assert nonzero_variance_groups(rewards, groups, num_groups=4).tolist() == [True, False, False, False]


def test_grouped_inputs_validate_shapes():
    with pytest.raises(ValueError, match="same length"):
        OUTCOME["grpo"](t([1.0, 2.0]), torch.tensor([0, 0, 0]))


# ================================================================ the registry's one signature


def test_score_on_last_token_puts_each_score_on_its_last_valid_token():
    # row 0: valid 0..1 -> col 1; row 1: a hole, valid 0 and 2 -> col 2; row 2: none valid -> the last column.
    mask = t([[1, 1, 0], [1, 0, 1], [0, 0, 0]])
    assert_close(score_on_last_token(t([2.0, -1.0, 5.0]), mask), [[0, 2.0, 0], [0, 0, -1.0], [0, 0, 5.0]])


def test_outcome_estimators_broadcast_the_rowwise_value_over_tokens():
    # The registry entry sums each row's token rewards and compares rows within groups; a row whose mask is all
    # zero (a truncated completion masked out of the loss) still counts in its group, as the [B] function has it.
    rewards, groups = t([1.0, 0.0, 0.5, 3.0]), torch.tensor([0, 0, 0, 1])
    mask = t([[1, 1, 0], [1, 1, 1], [0, 0, 0], [1, 0, 0]])
    token_rewards = score_on_last_token(rewards, mask)
    for name, options in (("grpo", {"scale_rewards": "group"}), ("dr_grpo", {}), ("rloo", {})):
        entry = ADVANTAGES[name]
        assert not entry.token_level and not entry.needs_values and set(entry.options) == set(options)
        advantages, returns = entry(token_rewards, mask, groups, **options)
        expected = OUTCOME[name](rewards, groups).unsqueeze(1).expand(4, 3)
        assert torch.equal(advantages, expected) and torch.equal(returns, expected)
    # grpo's scale_rewards reaches the function: "none" is r - mean = [0.5, -0.5, 0, 0] on every token
    advantages, _ = ADVANTAGES["grpo"](token_rewards, mask, groups, scale_rewards="none")
    assert_close(advantages[:, 0], [0.5, -0.5, 0.0, 0.0])


def test_token_level_entries_are_gae_whitened_and_reinforce_pp():
    torch.manual_seed(0)
    token_rewards, values = torch.randn(3, 5), torch.randn(3, 5)
    mask = t([[1, 1, 1, 0, 0], [1, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    groups = torch.tensor([0, 0, 1])
    entry = ADVANTAGES["gae"]
    assert entry.token_level and entry.needs_values and entry.options == ("gamma", "lam")
    advantages, returns = entry(token_rewards, mask, groups, values, gamma=0.9, lam=0.8)
    raw, expected_returns = gae(token_rewards, values, mask, 0.9, 0.8)
    assert torch.equal(advantages, whiten(raw, mask)) and torch.equal(returns, expected_returns)
    with pytest.raises(ValueError, match="needs the critic's values"):
        entry(token_rewards, mask, groups, gamma=0.9, lam=0.8)
    entry = ADVANTAGES["reinforce_pp"]
    assert entry.token_level and not entry.needs_values and entry.options == ("gamma",)
    advantages, returns = entry(token_rewards, mask, groups, gamma=0.7)
    expected = reinforce_pp(token_rewards, mask, 0.7)
    assert torch.equal(advantages, expected[0]) and torch.equal(returns, expected[1])


def test_estimators_refuse_token_rewards_that_are_not_b_by_t():
    with pytest.raises(ValueError, match=r"must both be \[B,T\]"):
        ADVANTAGES["grpo"](t([1.0, 0.0]), t([1.0, 1.0]), torch.tensor([0, 0]))


def test_a_new_estimator_is_one_registry_entry(tmp_path, monkeypatch):
    """An estimator added to ADVANTAGES trains on the loop with no driver edit: here 'sign', +1/-1 by whether the
    row beat its group's mean, with the option it names passed from the config."""
    import rewardlab
    from rewardlab.config import load_config

    seen = {}

    def sign(token_rewards, mask, group_index, values, gamma):
        seen["gamma"] = gamma
        rewards = token_rewards.sum(1)
        mean, _, _ = group_stats(rewards, group_index)
        advantages = (rewards - mean).sign().unsqueeze(1).expand_as(token_rewards)
        return advantages, advantages

    monkeypatch.setitem(ADVANTAGES._items, "test_sign", Estimator(sign, options=("gamma",)))
    cfg = load_config("grpo", overrides={
        "advantage": "test_sign", "gamma": 0.5, "max_steps": 2, "batch_size": 8, "num_generations": 4, "eval_n": 4,
        "max_completion_length": 4, "logging_steps": 0, "tensorboard": False, "output_dir": str(tmp_path), "torch_threads": 1,
        "model_config": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
                         "num_key_value_heads": 2}, "reward_funcs": ["tests.reward_fixtures:digit_share"]})
    rewardlab.train("grpo", cfg)
    assert seen == {"gamma": 0.5}


# ================================================================ token-level estimators


def test_gae_worked_example():
    # gamma 1, lam .95, V after the end 0:
    # t=2: delta = 1 + 0 - .7 = .3, A = .3
    # t=1: delta = 0 + .7 - .6 = .1, A = .1 + .95 * .3 = .385
    # t=0: delta = 0 + .6 - .5 = .1, A = .1 + .95 * .385 = .46575; R = A + V
    advantages, returns = gae(
        t([[0.0, 0.0, 1.0]]), t([[0.5, 0.6, 0.7]]), torch.ones(1, 3), gamma=1.0, lam=0.95
    )
    assert_close(advantages, [[0.46575, 0.385, 0.3]])
    assert_close(returns, [[0.96575, 0.985, 1.0]])


def _slow_gae(rewards, values, mask, gamma, lam):
    """Row by row, over the list of valid positions only, in plain Python floats."""
    B, T = rewards.shape
    advantages = [[0.0] * T for _ in range(B)]
    returns = [[0.0] * T for _ in range(B)]
    for b in range(B):
        positions = [i for i in range(T) if mask[b, i]]
        next_value, next_advantage = 0.0, 0.0
        for i in reversed(positions):
            delta = float(rewards[b, i]) + gamma * next_value - float(values[b, i])
            next_advantage = delta + gamma * lam * next_advantage
            next_value = float(values[b, i])
            advantages[b][i] = next_advantage
            returns[b][i] = next_advantage + next_value
    return advantages, returns


def _random_token_batch(seed: int, B: int = 5, T: int = 9):
    generator = torch.Generator().manual_seed(seed)
    rewards = torch.randn(B, T, generator=generator, dtype=torch.float64)
    values = torch.randn(B, T, generator=generator, dtype=torch.float64)
    mask = torch.rand(B, T, generator=generator) > 0.3  # holes anywhere, like env tokens in an episode
    mask[0] = False  # a row with nothing valid
    mask[1] = True  # a row with everything valid
    return rewards, values, mask


def test_gae_matches_slow_loop_on_masks_with_holes():
    rewards, values, mask = _random_token_batch(1)
    advantages, returns = gae(rewards, values, mask, gamma=0.9, lam=0.8)
    expected_advantages, expected_returns = _slow_gae(rewards, values, mask, 0.9, 0.8)
    assert_close(advantages, expected_advantages)
    assert_close(returns, expected_returns)


def test_gae_ignores_whatever_is_at_masked_positions():
    rewards, values, mask = _random_token_batch(2)
    clean = gae(rewards, values, mask, gamma=0.99, lam=0.95)
    garbage = torch.randn_like(values) * 1e3
    garbage[0, 0], garbage[2, 1] = float("nan"), float("inf")
    dirty = gae(
        torch.where(mask, rewards, garbage), torch.where(mask, values, garbage), mask, gamma=0.99, lam=0.95
    )
    for clean_part, dirty_part in zip(clean, dirty):
        assert torch.equal(clean_part, dirty_part)
        assert (clean_part[~mask] == 0).all()


def test_whiten():
    # valid [1, 2, 3]: mean 2, unbiased var ((1 + 0 + 1) / 2) = 1 -> [-1, 0, 1] / sqrt(1 + 1e-8).
    # The masked 100 must not enter the statistics and comes out 0.
    x, mask = t([[1.0, 2.0], [3.0, 100.0]]), t([[1, 1], [1, 0]])
    assert_close(whiten(x, mask), [[-1.0, 0.0], [1.0, 0.0]])
    # shift_mean=False only rescales: (x - 2) / 1 + 2 = x
    assert_close(whiten(x, mask, shift_mean=False), [[1.0, 2.0], [3.0, 0.0]])


def test_reinforce_pp_returns_and_batch_whitening():
    # gamma .9. Row 0 r [0, 0, 1] -> return-to-go [.81, .9, 1]; row 1 r [0, 2, pad] -> [1.8, 2, 0].
    # Valid returns {.81, .9, 1, 1.8, 2}: mean 6.51 / 5 = 1.302,
    # unbiased std sqrt(((-.492)^2 + (-.402)^2 + (-.302)^2 + .498^2 + .698^2) / 4) = 0.5545449
    # -> A = (R - 1.302) / 0.5545449.
    rewards, mask = t([[0.0, 0.0, 1.0], [0.0, 2.0, 5.0]]), t([[1, 1, 1], [1, 1, 0]])
    advantages, returns = reinforce_pp(rewards, mask, gamma=0.9)
    assert_close(returns, [[0.81, 0.9, 1.0], [1.8, 2.0, 0.0]])
    assert_close(advantages, [[-0.8872141, -0.7249188, -0.5445907], [0.8980338, 1.2586899, 0.0]])


def test_per_token_rewards_worked_example():
    # k1 = old - ref = [0.2, -0.5, 0]; r = -0.05 * k1 + [0, 0, 2] = [-0.01, 0.025, 2.0].
    scores = t([2.0, 3.0])
    logp_old = t([[-1.0, -2.0, -0.5], [-1.0, -2.0, -9.0]])
    ref_logp = t([[-1.2, -1.5, -0.5], [-1.2, -1.5, 4.0]])
    mask = t([[1, 1, 1], [1, 1, 0]])
    rewards, kl = per_token_rewards(scores, logp_old, ref_logp, mask, beta=0.05)
    # row 1 ends at t=1: r = [-0.01, 0.025 + 3.0, 0] and its padded slot holds neither KL nor score
    assert_close(rewards, [[-0.01, 0.025, 2.0], [-0.01, 3.025, 0.0]])
    assert_close(kl, [[0.2, -0.5, 0.0], [0.2, -0.5, 0.0]])
    assert not rewards.requires_grad


def test_overlong_penalty():
    # Lmax 20480, Lc 4096: free up to 16384; 18000 -> (16384 - 18000) / 4096 = -0.39453125;
    # 20480 -> -1; beyond -> -1.
    penalty = overlong_penalty(torch.tensor([100, 16384, 18000, 20480, 30000]), max_len=20480, cache_len=4096)
    assert_close(penalty, [0.0, 0.0, -0.39453125, -1.0, -1.0])


# ================================================================ policy losses


def _ppo_case():
    # Token ratios and advantages (eps 0.2 -> trust region [0.8, 1.2]):
    #   ratio 1.5, A +1: clipped high -> loss -A * 1.2 = -1.2, gradient 0
    #   ratio 0.5, A -1: clipped low  -> loss -A * 0.8 =  0.8, gradient 0
    #   ratio 1.1, A +1: inside       -> loss -1.1, d/dlogp = -A ratio = -1.1
    #   ratio 0.5, A +1: below but A > 0, not clipped -> loss -0.5, gradient -0.5
    #   ratio 1.5, A -1: above but A < 0, not clipped -> loss  1.5, gradient  1.5
    #   a padded token with garbage old log-prob -inf -> loss 0, gradient 0
    ratios = t([[1.5, 0.5, 1.1], [0.5, 1.5, 1.0]])
    old_logp = t([[-1.0, -1.0, -1.0], [-1.0, -1.0, float("-inf")]])
    logp = (torch.log(ratios) + torch.where(torch.isinf(old_logp), 0.0, old_logp)).requires_grad_()
    advantages = t([[1.0, -1.0, 1.0], [1.0, -1.0, 1.0]])
    mask = t([[1, 1, 1], [1, 1, 0]])
    return logp, old_logp, advantages, mask


def test_ppo_clip_loss_values_and_metrics():
    logp, old_logp, advantages, mask = _ppo_case()
    loss, metrics = POLICY_LOSSES["ppo_clip"](logp, old_logp, advantages, mask)
    assert_close(loss, [[-1.2, 0.8, -1.1], [-0.5, 1.5, 0.0]])
    # 2 of 5 valid tokens clipped (one low, one high); ratio mean (1.5+.5+1.1+.5+1.5)/5 = 1.02
    assert metrics["clip_fraction"] == pytest.approx(0.4, abs=1e-6)
    assert metrics["clip_fraction_low"] == pytest.approx(0.2, abs=1e-6)
    assert metrics["clip_fraction_high"] == pytest.approx(0.2, abs=1e-6)
    assert metrics["ratio_mean"] == pytest.approx(1.02, abs=1e-5)
    assert metrics["ratio_max"] == pytest.approx(1.5, abs=1e-5)
    assert all(isinstance(value, float) for value in metrics.values())


def test_ppo_clip_gradient_is_zero_where_clipped():
    logp, old_logp, advantages, mask = _ppo_case()
    loss, _ = POLICY_LOSSES["ppo_clip"](logp, old_logp, advantages, mask)
    loss.sum().backward()
    # d(-A rho)/dlogp = -A rho on unclipped tokens, 0 on clipped and padded ones
    assert_close(logp.grad, [[0.0, 0.0, -1.1], [-0.5, 1.5, 0.0]])


def test_ppo_clip_higher():
    # eps_low .2, eps_high .28, A > 0: ratio 1.25 stays inside (loss -1.25); 1.3 is clipped to 1.28.
    old_logp = torch.zeros(1, 2)
    logp = torch.log(t([[1.25, 1.3]]))
    loss, metrics = POLICY_LOSSES["ppo_clip"](
        logp, old_logp, t([1.0]), torch.ones(1, 2), eps_low=0.2, eps_high=0.28
    )
    assert_close(loss, [[-1.25, -1.28]])
    assert metrics["clip_fraction_high"] == pytest.approx(0.5, abs=1e-6)


@pytest.mark.parametrize("name", ["ppo_clip", "gspo"])
def test_sequence_advantages_broadcast_like_token_advantages(name):
    generator = torch.Generator().manual_seed(3)
    logp = torch.randn(3, 5, generator=generator) * 0.1 - 1.0
    old_logp = logp + torch.randn(3, 5, generator=generator) * 0.2
    mask = t([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 0, 0, 0, 0]])
    advantages = t([1.5, -0.5, 0.2])
    loss_seq, metrics_seq = POLICY_LOSSES[name](logp, old_logp, advantages, mask)
    loss_tok, metrics_tok = POLICY_LOSSES[name](logp, old_logp, advantages[:, None].expand(3, 5), mask)
    assert torch.equal(loss_seq, loss_tok)
    assert metrics_seq == metrics_tok


def test_gspo_worked_example_clipped_when_advantage_positive():
    # token log-ratios [.1, -.05, 0, .15]: mean .05 -> s = exp(.05) = 1.0512711.
    # eps_low 3e-4, eps_high 4e-4: A = +1 -> clipped at 1.0004, every token's loss -1.0004, no gradient.
    old_logp = t([[-1.0, -1.0, -1.0, -1.0, -1.0]])
    logp = (old_logp + t([[0.1, -0.05, 0.0, 0.15, 9.0]])).requires_grad_()  # last token is padding
    mask = t([[1, 1, 1, 1, 0]])
    loss, metrics = POLICY_LOSSES["gspo"](logp, old_logp, t([1.0]), mask, eps_low=3e-4, eps_high=4e-4)
    assert_close(loss, [[-1.0004, -1.0004, -1.0004, -1.0004, 0.0]])
    assert metrics["ratio_mean"] == pytest.approx(1.0512711, abs=1e-5)
    assert metrics["clip_fraction"] == pytest.approx(1.0, abs=1e-6)
    AGGREGATIONS["seq_mean_token_mean"](loss, mask).backward()
    assert_close(logp.grad, [[0.0] * 5])


def test_gspo_unclipped_gradient_reaches_every_token():
    # A = -1 with s = 1.0512711 > 1 is not clipped: sequence loss -A s = 1.0512711 on each token.
    # seq_mean_token_mean gives L = -A s with s = exp(mean_t log-ratio), so
    # dL/dlogp_t = -A s / |y| = 1.0512711 / 4 = 0.2628178 for each valid token, 0 on padding.
    old_logp = t([[-1.0, -1.0, -1.0, -1.0, -1.0]])
    logp = (old_logp + t([[0.1, -0.05, 0.0, 0.15, 9.0]])).requires_grad_()
    mask = t([[1, 1, 1, 1, 0]])
    loss, metrics = POLICY_LOSSES["gspo"](logp, old_logp, t([-1.0]), mask, eps_low=3e-4, eps_high=4e-4)
    assert_close(loss, [[1.0512711] * 4 + [0.0]])
    assert metrics["clip_fraction"] == 0.0
    total = AGGREGATIONS["seq_mean_token_mean"](loss, mask)
    assert_close(total, 1.0512711)
    total.backward()
    assert_close(logp.grad, [[0.2628178] * 4 + [0.0]])


def _cispo_case():
    # two valid tokens and a padded one: ratios exp(logp - old) = 0.5 / 0.25 = 2.0 and 0.25 / 0.5 = 0.5
    old_logp = t([[math.log(0.25), math.log(0.5), 0.0]])
    logp = t([[math.log(0.5), math.log(0.25), float("-inf")]]).requires_grad_()
    return logp, old_logp, t([[1.0, 1.0, 1.0]]), t([[1, 1, 0]])


def test_cispo_worked_example_caps_and_detaches_the_weight():
    # CISPO: loss_t = -sg(min(rho_t, eps_max)) A_t logp_t, eps_max = eps_high = 1.5 (the cap itself, TRL's meaning).
    # weights min(2.0, 1.5) = 1.5 and min(0.5, 1.5) = 0.5, A = 1:
    #   token 1: -1.5 * 1 * log(0.5) = 1.5 * 0.6931472 = 1.0397208
    #   token 2: -0.5 * 1 * log(0.25) = 0.5 * 1.3862944 = 0.6931472;   padding: 0
    logp, old_logp, advantages, mask = _cispo_case()
    loss, metrics = POLICY_LOSSES["cispo"](logp, old_logp, advantages, mask, eps_low=0.2, eps_high=1.5)
    assert_close(loss, [[1.0397208, 0.6931472, 0.0]])
    # the weight is a constant: d loss_t / d logp_t = -w_t A_t = [-1.5, -0.5], not REINFORCE-through-the-ratio
    loss.sum().backward()
    assert_close(logp.grad, [[-1.5, -0.5, 0.0]])
    # token 1's weight was capped (2.0 > 1.5): 1 of 2 valid tokens; ratio mean (2.0 + 0.5) / 2 = 1.25, max 2.0
    assert metrics["clip_fraction"] == pytest.approx(0.5) and metrics["clip_fraction_high"] == pytest.approx(0.5)
    assert metrics["clip_fraction_low"] == 0.0
    assert metrics["ratio_mean"] == pytest.approx(1.25, abs=1e-6) and metrics["ratio_max"] == pytest.approx(2.0, abs=1e-6)


def test_cispo_without_eps_high_caps_at_eps_low_as_trl_does():
    # epsilon_high unset: TRL caps at epsilon (0.2), so both weights are 0.2:
    #   -0.2 * log(0.5) = 0.1386294,  -0.2 * log(0.25) = 0.2772589
    logp, old_logp, advantages, mask = _cispo_case()
    loss, metrics = POLICY_LOSSES["cispo"](logp, old_logp, advantages, mask, eps_low=0.2, eps_high=None)
    assert_close(loss, [[0.1386294, 0.2772589, 0.0]])
    assert metrics["clip_fraction"] == pytest.approx(1.0)  # both ratios (2.0, 0.5) exceed 0.2


def test_sapo_worked_example_soft_gate():
    # SAPO: loss = -(4 / tau) sigmoid(tau (rho - 1)) A, tau = tau_pos (1.0) if A > 0 else tau_neg (1.05).
    # row 1: rho = 1.5, A = +2, tau = 1:    gate = 4 sigmoid(0.5) = 4 * 0.6224593 = 2.4898373; loss = -2 * gate = -4.9796746
    #        d loss / d logp = -A * 4 s (1 - s) * rho (d rho / d logp = rho), s = sigmoid(0.5):
    #        -2 * 4 * 0.6224593 * 0.3775407 * 1.5 = -2.8200445
    # row 2: rho = 0.5, A = -1, tau = 1.05: s = sigmoid(1.05 * -0.5) = sigmoid(-0.525) = 0.3716838
    #        gate = 4 s / 1.05 = 1.4159383; loss = -(-1) gate = 1.4159383
    #        d loss / d logp = +1 * 4 s (1 - s) * 0.5 = 4 * 0.3716838 * 0.6283162 * 0.5 = 0.4670699
    old_logp = t([[0.0], [0.0]])
    logp = t([[math.log(1.5)], [math.log(0.5)]]).requires_grad_()
    loss, metrics = POLICY_LOSSES["sapo"](logp, old_logp, t([2.0, -1.0]), t([[1], [1]]), tau_pos=1.0, tau_neg=1.05)
    assert_close(loss, [[-4.9796746], [1.4159383]])
    loss.sum().backward()
    assert_close(logp.grad, [[-2.8200445], [0.4670699]])
    # nothing is clipped; the gate's mean slope 4 s (1 - s): (0.9400148 + 0.9341398) / 2 = 0.9370773
    assert metrics["clip_fraction"] == 0.0
    assert metrics["gate_mean"] == pytest.approx(0.9370773, abs=1e-5)


def test_sapo_on_policy_is_the_plain_policy_gradient():
    # rho = 1: s = sigmoid(0) = 1/2, slope 4 * 1/4 = 1, so d loss / d logp = -A whatever tau; loss = -(2 / tau) A
    old_logp = t([[-0.7, -1.2]])
    logp = old_logp.clone().requires_grad_()
    loss, _ = POLICY_LOSSES["sapo"](logp, old_logp, t([[0.5, -2.0]]), t([[1, 1]]), tau_pos=1.0, tau_neg=1.05)
    assert_close(loss, [[-1.0, 2.0 * 2.0 / 1.05]])  # -(2/1) 0.5 = -1.0;  -(2/1.05)(-2) = 3.8095238
    loss.sum().backward()
    assert_close(logp.grad, [[-0.5, 2.0]])


def test_policy_loss_rejects_misshaped_advantages():
    with pytest.raises(ValueError, match="advantages must be"):
        POLICY_LOSSES["ppo_clip"](torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(3), torch.ones(2, 3))


# ================================================================ aggregation


@pytest.mark.parametrize(
    "name, weight_short, weight_long",
    [
        # lengths 2 and 8, T = L_max = 10:
        ("seq_mean_token_mean", 1 / 4, 1 / 16),  # 1 / (B * |y_i|) = 1/(2*2), 1/(2*8)
        ("token_mean", 1 / 10, 1 / 10),  # 1 / sum|y| = 1/10
        ("seq_mean_token_sum_norm", 1 / 20, 1 / 20),  # 1 / (B * L_max) = 1/20
    ],
)
def test_aggregation_token_weights(name, weight_short, weight_long):
    mask = torch.zeros(2, 10)
    mask[0, :2], mask[1, :8] = 1, 1
    per_token_loss = torch.randn(2, 10).requires_grad_()
    AGGREGATIONS[name](per_token_loss, mask, max_len=10).backward()
    expected = torch.zeros(2, 10, dtype=torch.float64)
    expected[0, :2], expected[1, :8] = weight_short, weight_long
    assert_close(per_token_loss.grad, expected)


def test_aggregation_values_and_max_len():
    # row 0 valid [1, 3], row 1 valid [2, 2, 2, 2]; a NaN in a padded slot must not leak.
    per_token_loss = t([[1.0, 3.0, float("nan"), 0.0], [2.0, 2.0, 2.0, 2.0]])
    mask = t([[1, 1, 0, 0], [1, 1, 1, 1]])
    assert_close(AGGREGATIONS["token_mean"](per_token_loss, mask), 12 / 6)  # (4 + 8) / 6
    assert_close(AGGREGATIONS["seq_mean_token_mean"](per_token_loss, mask), 2.0)  # mean(4/2, 8/4)
    assert_close(AGGREGATIONS["seq_mean_token_sum_norm"](per_token_loss, mask), 12 / 8)  # 12 / (2 * 4)
    # an explicit max_len of 6: 12 / (2 * 6) = 1
    assert_close(AGGREGATIONS["seq_mean_token_sum_norm"](per_token_loss, mask, max_len=6), 1.0)


# ================================================================ KL


def test_kl_estimators_worked_example():
    # delta = ref - logp = -1.5 - (-1) = -0.5: k1 = .5, k2 = .25 / 2 = .125,
    # k3 = exp(-.5) + .5 - 1 = 0.6065307 - 0.5 = 0.1065307
    logp, ref_logp = t([-1.0]), t([-1.5])
    assert_close(kl_estimate(logp, ref_logp, "k1"), [0.5])
    assert_close(kl_estimate(logp, ref_logp, "k2"), [0.125])
    assert_close(kl_estimate(logp, ref_logp, "k3"), [0.1065307])


def test_kl_k3_is_finite_for_extreme_log_ratios():
    # delta = 100 clamps to 20: exp(20) - 20 - 1 = 485165174.40979 (finite, not inf)
    value = kl_estimate(
        torch.zeros(1, dtype=torch.float64), torch.full((1,), 100.0, dtype=torch.float64), "k3"
    )
    assert torch.isfinite(value).all()
    assert_close(value, [math.exp(20) - 21], atol=1e-6)


def test_kl_unknown_kind_lists_valid_kinds():
    with pytest.raises(ValueError, match="k1, k2, k3"):
        kl_estimate(torch.zeros(1), torch.zeros(1), "k4")


def test_adaptive_kl_controller_worked_example_and_checkpoint():
    # e = clip(9/6 - 1, -.2, .2) = .2; beta = .2 * (1 + .2 * 512 / 10000) = .2 * 1.01024 = .202048
    controller = AdaptiveKLController(init_beta=0.2, target=6.0, horizon=10000)
    controller.update(9.0, n_steps=512)
    assert controller.value == pytest.approx(0.202048, abs=1e-9)
    # below target: e = clip(3/6 - 1) = -.2; .202048 * (1 - .01024) = 0.19997930
    restored = AdaptiveKLController(init_beta=0.2, target=6.0, horizon=10000)
    restored.load_state_dict(controller.state_dict())
    restored.update(torch.tensor(3.0), n_steps=512)
    assert restored.value == pytest.approx(0.202048 * 0.98976, abs=1e-9)


def test_fixed_kl_controller():
    controller = FixedKLController(0.05)
    controller.update(100.0, n_steps=512)
    assert controller.value == 0.05
    other = FixedKLController(0.0)
    other.load_state_dict(controller.state_dict())
    assert other.value == 0.05


# ================================================================ value loss


def test_value_loss_worked_example():
    # V [1.0, .5, .3], V_old .5 each, R [2, 0, .3], clip .2:
    #   t0: (1-2)^2 = 1; clipped V = .7 -> (.7-2)^2 = 1.69 > 1: clipped branch, gradient 0
    #   t1: (.5-0)^2 = .25 both ways;   t2: V - V_old = -.2 is inside -> 0 both ways
    # loss = .5 * (1.69 + .25 + 0) / 3 = 0.3233333; clip fraction 1/3.
    # explained variance: Var(R) = 2.3266667/2, Var(R - V) = Var([1, -.5, 0]) = 1.1666667/2
    #   -> 1 - 1.1666667/2.3266667 = 0.4985673
    values = t([[1.0, 0.5, 0.3, 55.0]]).requires_grad_()
    old_values = t([[0.5, 0.5, 0.5, float("nan")]])
    returns = t([[2.0, 0.0, 0.3, -3.0]])
    mask = t([[1, 1, 1, 0]])
    loss, metrics = value_loss(values, old_values, returns, mask, clip_range=0.2)
    assert_close(loss, 0.3233333)
    assert metrics["value_clip_fraction"] == pytest.approx(1 / 3, abs=1e-6)
    assert metrics["explained_variance"] == pytest.approx(0.4985673, abs=1e-5)
    loss.backward()
    # t1: d(.5 (V-R)^2 / 3)/dV = (V - R) / 3 = .5 / 3 = 0.1666667; t0 clipped, t2 at R, t3 padded
    assert_close(values.grad, [[0.0, 0.1666667, 0.0, 0.0]])


def test_value_loss_without_clipping():
    # clip_range None: .5 * mean((V - R)^2) = .5 * (1 + .25 + 0) / 3 = 0.2083333
    loss, metrics = value_loss(
        t([1.0, 0.5, 0.3]), t([0.5, 0.5, 0.5]), t([2.0, 0.0, 0.3]), torch.ones(3), clip_range=None
    )
    assert_close(loss, 0.2083333)
    assert metrics["value_clip_fraction"] == 0.0


def test_explained_variance():
    # perfect prediction -> 1; predicting the mean (2) of [1, 2, 3] -> 1 - Var(R)/Var(R) = 0
    target, mask = t([1.0, 2.0, 3.0, 9.0]), t([1, 1, 1, 0])
    assert explained_variance(target, target, mask) == pytest.approx(1.0, abs=1e-12)
    assert explained_variance(t([2.0, 2.0, 2.0, 0.0]), target, mask) == pytest.approx(0.0, abs=1e-12)
    assert math.isnan(explained_variance(t([1.0, 1.0]), t([5.0, 5.0]), t([1, 1])))
