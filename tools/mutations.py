"""The breakages `make mutate` applies, one at a time (tools/mutate.py runs them).

Each names one exact snippet of one file (it must occur there exactly once) and what replaces it, why the
change matters, and the test files that should notice. Keep `old` as short as stays unique: a snippet
that no longer matches stops `make mutate` with a message, so a refactor updates it here on purpose.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Mutation:
    name: str
    path: str
    old: str
    new: str
    why: str
    tests: list[str] = field(default_factory=list)


ONLINE_TESTS = ["tests/test_learning_online.py"]


def online_tests(*names: str) -> list[str]:
    """The learning tests written for one switch (each runs every parametrisation of its test)."""
    return [f"{ONLINE_TESTS[0]}::{name}" for name in names]

ONLINE: list[Mutation] = [
    Mutation('online: loss sign flipped before backward', 'rewardlab/trainers/policy_update.py',
             '(loss * weight).backward()',
             '(-loss * weight).backward()',
             'every online method must raise its reward, not lower it', ONLINE_TESTS),
    Mutation('online: gspo replaced by the PPO clip', 'rewardlab/trainers/policy_update.py',
             'POLICY_LOSSES[cfg.policy_loss]',
             'POLICY_LOSSES["ppo_clip"]',
             'policy_loss must pick the loss', online_tests('test_gspo_uses_one_ratio_per_sequence', 'test_online_method_raises_its_expected_reward')),
    Mutation('online: aggregation forced to token_mean', 'rewardlab/trainers/policy_update.py',
             'AGGREGATIONS[aggregation]',
             'AGGREGATIONS["token_mean"]',
             'loss_type must pick the aggregation', online_tests('test_loss_type_picks_the_aggregation')),
    Mutation('online: loss_type ignored', 'rewardlab/trainers/policy_update.py',
             'aggregation = LOSS_TYPES.get(cfg.loss_type, cfg.loss_type)',
             'aggregation = "seq_mean_token_mean"',
             'loss_type must pick the aggregation', online_tests('test_loss_type_picks_the_aggregation', 'test_advantage_estimators_are_the_ones_asked_for')),
    Mutation('online: advantage forced to grpo', 'rewardlab/trainers/policy_update.py',
             'LossPlan(aggregation, ADVANTAGES[cfg.advantage],',
             'LossPlan(aggregation, ADVANTAGES["grpo"],',
             'RLOO and Dr. GRPO must run their own estimators', online_tests('test_advantage_estimators_are_the_ones_asked_for')),
    Mutation('online: scale_rewards ignored', 'rewardlab/trainers/policy_update.py',
             'options = {name: getattr(cfg, name) for name in estimator.options}',
             'options = {name: getattr(cfg, name) for name in estimator.options if name != "scale_rewards"}',
             'scale_rewards must reach the grpo estimator', online_tests('test_advantage_estimators_are_the_ones_asked_for')),
    Mutation('online: KL term dropped from the loss', 'rewardlab/trainers/policy_update.py',
             'per_token = per_token + kl_ctl.value * kl',
             'per_token = per_token',
             'beta must pull the policy toward the reference', online_tests('test_beta_pulls_the_policy_back_to_the_reference')),
    Mutation('online: beta ignored in the per-token reward', 'rewardlab/trainers/policy_update.py',
             't.ref_logp, t.completion_mask, kl_ctl.value)',
             't.ref_logp, t.completion_mask, 0.0)',
             'REINFORCE++/PPO put the KL penalty in the reward', online_tests('test_token_level_kl_penalty_enters_the_reward')),
    Mutation('online: DAPO dynamic sampling off', 'rewardlab/trainers/online.py',
             'if cfg.dynamic_sampling:',
             'if False:',
             'dynamic sampling must drop zero-variance groups', online_tests('test_dynamic_sampling_trains_only_informative_groups')),
    Mutation('online: overlong penalty off', 'rewardlab/rewards/scoring.py',
             'if cfg.overlong_buffer:',
             'if False:',
             "DAPO's overlong shaping must reach the reward", online_tests('test_overlong_penalty_and_missing_eos_penalty_are_added_to_the_reward')),
    Mutation('online: missing_eos_penalty ignored', 'rewardlab/rewards/scoring.py',
             'if cfg.missing_eos_penalty:',
             'if False:',
             'the penalty must reach the reward', online_tests('test_overlong_penalty_and_missing_eos_penalty_are_added_to_the_reward')),
    Mutation('online: mask_truncated_completions ignored', 'rewardlab/trainers/policy_update.py',
             'if cfg.mask_truncated_completions:',
             'if False:',
             'truncated completions must leave the loss', online_tests('test_mask_truncated_completions_keeps_them_out_of_the_loss')),
    Mutation('online: epsilon_high ignored', 'rewardlab/trainers/policy_update.py',
             'advantages[rows], mask, cfg.epsilon, cfg.epsilon_high or None)',
             'advantages[rows], mask, cfg.epsilon, None)',
             'clip-higher must widen the upper clip', online_tests('test_epsilon_high_sets_the_upper_clip')),
    Mutation('online: target_kl ignored', 'rewardlab/trainers/policy_update.py',
             'if cfg.target_kl and applied and pass_stats["approx_kl"] > cfg.target_kl:',
             'if False:',
             'the updates must stop once the policy has moved target_kl from the rollout', online_tests('test_approx_kl_is_logged_and_target_kl_stops_the_updates_early')),
    Mutation('online: num_iterations ignored', 'rewardlab/trainers/policy_update.py',
             'for _ in range(cfg.num_iterations):',
             'for _ in range(1):',
             'several updates per rollout must run', online_tests('test_num_iterations_reuses_the_rollout_off_policy', 'test_gspo_uses_one_ratio_per_sequence')),
    Mutation('online: max_prompt_length ignored', 'rewardlab/trainers/batches.py',
             'encode_prompt(r["prompt"], tok, cfg.max_prompt_length) for r in batch',
             'encode_prompt(r["prompt"], tok, None) for r in batch',
             'long prompts must be truncated', online_tests('test_max_prompt_length_truncates_prompts')),
    Mutation('online: RLSD reweighting off', 'rewardlab/trainers/policy_update.py',
             'if plan.objective.advantages is not None:',
             'if False:',
             'RLSD must reweight the advantages per token', online_tests('test_rlsd_lambda_scales_the_per_token_reweighting', 'test_online_method_raises_its_expected_reward')),
    Mutation('online: rlsd_lambda ignored', 'rewardlab/trainers/objectives.py',
             'cfg.rlsd_lambda, cfg.rlsd_eps)',
             '1.0, cfg.rlsd_eps)',
             'rlsd_lambda 0 must be plain GRPO', online_tests('test_rlsd_lambda_scales_the_per_token_reweighting')),
    Mutation('online: PPO value loss sign flipped', 'rewardlab/trainers/policy_update.py',
             'loss = loss + cfg.vf_coef * v_loss',
             'loss = loss - cfg.vf_coef * v_loss',
             'the critic must learn the value', online_tests('test_ppo_critic_learns_the_value')),
    Mutation('online: vf_coef ignored', 'rewardlab/trainers/policy_update.py',
             'loss = loss + cfg.vf_coef * v_loss',
             'loss = loss + 0.1 * v_loss',
             'vf_coef must weight the value loss', online_tests('test_ppo_vf_coef_zero_leaves_the_critic_untrained')),
    Mutation('online: cliprange_value ignored', 'rewardlab/trainers/policy_update.py',
             'cfg.cliprange_value or None)',
             'None)',
             'value clipping must apply', online_tests('test_ppo_cliprange_value_clips_the_value_update')),
    Mutation("online: top_k/top_p ignored in the trainer's log-probs", 'rewardlab/trainers/policy_update.py',
             'return {"top_k": cfg.top_k, "top_p": cfg.top_p}',
             'return {}',
             'the trainer must score the distribution the engine sampled', online_tests('test_trainer_log_probs_use_the_sampler_filter', 'test_engine_and_trainer_agree_on_filtered_log_probs')),
    Mutation('online: engine reports unfiltered log-probs', 'rewardlab/rollout/hf_engine.py',
             'torch.log_softmax(filter_logits(logits / params.temperature, params.top_k, params.top_p), -1)',
             'torch.log_softmax(logits / params.temperature, -1)',
             'sampled log-probs must be those of the filtered distribution', online_tests('test_engine_and_trainer_agree_on_filtered_log_probs', 'test_trainer_log_probs_use_the_sampler_filter')),
    Mutation('online: flowrl trajectory-balance loss negated', 'rewardlab/algos/flowrl.py',
             'loss = (weights * delta.square()).mean()',
             'loss = -(weights * delta.square()).mean()',
             'FlowRL must move toward its target distribution', online_tests('test_online_method_raises_its_expected_reward')),
    Mutation('online: env_turns_per_episode ignored', 'rewardlab/trainers/env_rollouts.py',
             'cfg.env_reward, cfg.env_turns_per_episode, self.generator',
             'cfg.env_reward, 0, self.generator',
             'per-turn rows must be subsampled as asked', online_tests('test_env_turns_per_episode_trains_on_that_many_turns')),
    Mutation('online: sdpo distillation direction flipped', 'rewardlab/algos/distill.py',
             'per_token = torch.where(valid, weight * gap * logp, 0.0)',
             'per_token = torch.where(valid, -weight * gap * logp, 0.0)',
             'SDPO must move the student toward its self-teacher', online_tests('test_sdpo_moves_the_student_toward_its_self_teacher')),
    Mutation('online: gae advantages not whitened', 'rewardlab/algos/advantages.py',
             'return whiten(advantages, mask), returns',
             'return advantages, returns',
             'the gae entry is PPO\'s whitened GAE', ['tests/test_algos.py::test_token_level_entries_are_gae_whitened_and_reinforce_pp']),
    Mutation('online: estimator options not passed', 'rewardlab/trainers/policy_update.py',
             'options = {name: getattr(cfg, name) for name in estimator.options}',
             'options = {name: getattr(cfg, name) for name in estimator.options[:0]}',
             'an estimator gets the settings it names', ['tests/test_algos.py::test_a_new_estimator_is_one_registry_entry']),
]

SEAM_TESTS = "tests/test_seams.py"
SEAMS: list[Mutation] = [
    Mutation('seam: engine not synced after a step', 'rewardlab/trainers/online.py',
             '        engine.sync(model)\n',
             '',
             'an engine that holds its own weights (vLLM) would keep sampling from the first policy',
             [f'{SEAM_TESTS}::test_a_new_engine_is_one_registry_entry_and_is_synced_after_every_step']),
    Mutation('seam: estimator bypasses the gather module', 'rewardlab/trainers/policy_update.py',
             '    group = gather.current()  # the estimator',
             '    group = gather.SingleProcess()  # the estimator',
             'a multi-process run would compute group statistics from its own shard only',
             [f'{SEAM_TESTS}::test_every_gather_point_of_the_loop_goes_through_the_gather_module']),
    Mutation('multi-process: minibatch share not scaled by the process count', 'rewardlab/trainers/policy_update.py',
             'return float(mask[rows].sum() / group.token_count(mask).clamp(min=1)) * group.world_size',
             'return float(mask[rows].sum() / group.token_count(mask).clamp(min=1))',
             'the gradient averaging over processes would halve every token_mean update at 2 processes',
             ['tests/test_multiprocess.py::test_two_processes_update_exactly_as_one_on_the_same_global_batch']),
    Mutation('multi-process: per-row share over this process only', 'rewardlab/trainers/policy_update.py',
             'return (rows.stop - rows.start) / group.count(total_rows) * group.world_size',
             'return (rows.stop - rows.start) / total_rows',
             'an uneven split of rows would weight one process\'s rows more than the other\'s',
             ['tests/test_multiprocess.py::test_two_processes_update_exactly_as_one_on_the_same_global_batch']),
    Mutation('seam: a user environment must report a score', 'rewardlab/trainers/env_rollouts.py',
             'result.metrics.get("score", result.metrics["return"])',
             'result.metrics["score"]',
             'an environment written as docs/architecture.md shows would crash in its first evaluation',
             ['tests/test_architecture_examples.py::test_the_documented_estimator_objective_environment_and_engine_train']),
]

CONFIG_TESTS = "tests/test_config_sections.py"
CONFIG: list[Mutation] = [
    Mutation('config: a key under the wrong section accepted', 'rewardlab/config.py',
             '                if SECTION_OF.get(name) != section:',
             '                if False:',
             'optimisation.temperature would silently set the sampling temperature',
             [f'{CONFIG_TESTS}::test_a_misplaced_or_doubled_key_is_an_error_naming_the_fix']),
    Mutation('config: unused sections not warned about', 'rewardlab/config.py',
             '        if unused:\n            log.warning(',
             '        if False:\n            log.warning(',
             'flowrl_beta without objective=flowrl would be ignored in silence',
             [f'{CONFIG_TESTS}::test_settings_of_a_section_the_run_does_not_read_are_named_in_a_warning']),
    Mutation('config: objectives do not check their settings', 'rewardlab/config.py',
             '        if objective.check is not None:',
             '        if False:',
             'flowrl_beta=-1 would train toward a reversed target',
             [f'{CONFIG_TESTS}::test_an_objective_checks_its_own_settings_at_load']),
]

# the other groups live beside this file, one module each, so that each area keeps its own list
from mutations_offline import OFFLINE  # noqa: E402
from mutations_sandbox import SANDBOX  # noqa: E402
from mutations_splits import SPLITS  # noqa: E402

MUTATIONS: list[Mutation] = ONLINE + SEAMS + CONFIG + OFFLINE + SPLITS + SANDBOX
