"""A TRL 1.16 user ports unchanged: reward functions and dataset rows written after TRL's documentation run through
rewardlab as they are (TRL's calling convention: trainer_state, log_metric, log_extra, async rewards run
concurrently, the dataset's completion column held back); TRL-style YAML configs and `--flag value` command lines
are translated by the alias table (rewardlab/config_trl.py) and train; every TRL config name has an answer."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
import re
import time

import pytest
import yaml

import rewardlab
from rewardlab.cli import main, settings_from_flags
from rewardlab.config import ConfigError, GRPOConfig, load_config
from rewardlab.config_trl import ALIASES, DEFERRED, UNSUPPORTED, VALUE_FORMS
from rewardlab.rewards import RewardError, RewardFunctions
from rewardlab.trainers.inputs import preflight_rewards

TINY = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 2}


# ------------------------------------------------------------------ reward functions from TRL's documentation
def format_reward_func(completions, **kwargs):
    """Reward function that checks if the completion has a specific format."""
    pattern = r"^<think>.*?</think><answer>.*?</answer>$"
    completion_contents = [completion[0]["content"] for completion in completions]
    matches = [re.match(pattern, content) for content in completion_contents]
    return [1.0 if match else 0.0 for match in matches]


def reward_len(completions, **kwargs):
    return [-abs(20 - len(completion[0]["content"])) for completion in completions]


def reward_func(completions, ground_truth, **kwargs):
    # Regular expression to capture content inside \boxed{}
    matches = [re.search(r"\\boxed\{(.*?)\}", completion[0]["content"]) for completion in completions]
    contents = [match.group(1) if match else "" for match in matches]
    # Reward 1 if the content is the same as the ground truth, 0 otherwise
    return [1.0 if c == gt else 0.0 for c, gt in zip(contents, ground_truth)]


def chars_per_token(completions, completion_ids, **kwargs):
    """Length-based: characters per generated token (divides by len(completion_ids))."""
    return [len(c[0]["content"]) / len(ids) for c, ids in zip(completions, completion_ids)]


def math_only(prompts, completions, task, **kwargs):
    """Multi-task: None where the reward does not apply."""
    return [1.0 if t == "math" else None for t in task]


def curriculum(completions, trainer_state, **kwargs):
    """Dynamic shaping: weight the reward by training progress."""
    progress = trainer_state.global_step / max(1, trainer_state.max_steps)
    return [progress] * len(completions)


def logging_reward(completions, log_metric, log_extra, **kwargs):
    lengths = [len(c[0]["content"]) for c in completions]
    log_metric("avg_completion_chars", sum(lengths) / len(lengths))
    log_extra("completion_chars", lengths)
    return [0.0] * len(completions)


async def async_judge(prompts, completions, **kwargs):
    await asyncio.sleep(0.3)  # an LLM judge over the network
    return [0.5] * len(completions)


async def async_judge_2(completions, **kwargs):
    await asyncio.sleep(0.3)
    return [0.25] * len(completions)


def chat(text):
    return [{"role": "assistant", "content": text}]


PROMPTS = [[{"role": "user", "content": "What is 1+1?"}]] * 3
COMPLETIONS = [chat("<think>easy</think><answer>\\boxed{2}</answer>"), chat("\\boxed{3}"), chat("2")]
IDS = [[5, 6, 7, 8], [9, 10], [11]]
LENGTHS = [len(c[0]["content"]) for c in COMPLETIONS]  # 45, 9, 1 characters


def test_trl_documentation_reward_functions_run_unchanged():
    rewards = RewardFunctions([format_reward_func, reward_len, reward_func, chars_per_token, math_only])
    total, per_function = rewards(PROMPTS, COMPLETIONS, IDS, {"ground_truth": ["2", "2", "2"], "task": ["math", "code", "math"]})
    assert per_function["format_reward_func"].tolist() == [1.0, 0.0, 0.0]
    assert per_function["reward_len"].tolist() == [-abs(20 - n) for n in LENGTHS]
    assert per_function["reward_func"].tolist() == [1.0, 0.0, 0.0]
    assert per_function["chars_per_token"].tolist() == pytest.approx([LENGTHS[0] / 4, 9 / 2, 1 / 1])
    assert per_function["math_only"].isnan().tolist() == [False, True, False]


def test_trl_package_reward_functions_run_unchanged():
    """TRL's own trl.rewards, imported from the installed package (skipped without TRL)."""
    trl_rewards = pytest.importorskip("trl.rewards")
    rewards = RewardFunctions([trl_rewards.accuracy_reward, trl_rewards.think_format_reward,
                               trl_rewards.get_soft_overlong_punishment(max_completion_len=4, soft_punish_cache=2)])
    completions = [chat("<think>x</think> \\boxed{\\frac{1}{3}}"), chat("\\boxed{\\frac{1}{2}}")]
    _, per_function = rewards(PROMPTS[:2], completions, [[1, 2, 3], [1, 2, 3, 4]], {"solution": ["\\frac{1}{3}"] * 2})
    assert per_function["accuracy_reward"].tolist() == [1.0, 0.0]
    assert per_function["think_format_reward"].tolist() == [1.0, 0.0]
    assert per_function["soft_overlong_punishment_reward"].tolist() == [-0.5, -1.0]  # 3 and 4 tokens, limit 4, cache 2


def test_async_rewards_are_awaited_concurrently_and_in_any_event_loop():
    class AsyncCallable:
        __name__ = "async_callable"

        async def __call__(self, completions, **kwargs):
            await asyncio.sleep(0.3)
            return [1.0] * len(completions)

    async def scaled(completions, scale, **kwargs):
        await asyncio.sleep(0.3)
        return [scale] * len(completions)

    rewards = RewardFunctions([async_judge, async_judge_2, AsyncCallable(), functools.partial(scaled, scale=2.0), reward_len])
    started = time.perf_counter()
    total, per_function = rewards(PROMPTS, COMPLETIONS, IDS)
    assert time.perf_counter() - started < 0.9  # four 0.3 s sleeps, gathered: not 1.2 s one after another
    assert per_function["async_judge"].tolist() == [0.5] * 3 and per_function["async_judge_2"].tolist() == [0.25] * 3
    assert per_function["async_callable"].tolist() == [1.0] * 3 and per_function["scaled"].tolist() == [2.0] * 3

    async def notebook():  # called from code that already runs an event loop (Jupyter)
        return rewards(PROMPTS, COMPLETIONS, IDS)[0]

    assert asyncio.run(notebook()).tolist() == total.tolist()


def test_async_rewards_run_in_reward_workers_and_their_errors_name_them():
    rewards = RewardFunctions([async_judge, logging_reward], workers=1)
    _, per_function = rewards(PROMPTS, COMPLETIONS, IDS)
    assert per_function["async_judge"].tolist() == [0.5] * 3
    assert rewards.last_logs.extra == {"completion_chars": LENGTHS}  # logged in the worker, back in the run

    async def broken(completions, **kwargs):
        raise KeyError("boom")

    with pytest.raises(RewardError, match="reward function broken raised KeyError"):
        RewardFunctions([async_judge, broken])(PROMPTS, COMPLETIONS, IDS)


def test_log_metric_log_extra_and_trainer_state_behave_as_in_trl():
    rewards = RewardFunctions([logging_reward, curriculum])
    rewards.at_step(3, max_steps=12)
    _, per_function = rewards(PROMPTS, COMPLETIONS, IDS)
    assert per_function["curriculum"].tolist() == [0.25] * 3  # global_step 3 of max_steps 12
    assert rewards.last_logs.metric_means() == {"avg_completion_chars": pytest.approx(sum(LENGTHS) / 3)}
    assert rewards.last_logs.extra == {"completion_chars": LENGTHS}

    def bad_extra(completions, log_extra, **kwargs):
        log_extra("short", [1])
        return [0.0] * len(completions)

    with pytest.raises(RewardError, match=r"log_extra\('short', ...\) got 1 values in all for a batch of 3"):
        RewardFunctions([bad_extra])(PROMPTS, COMPLETIONS, IDS)


def test_the_pre_check_passes_completion_ids_that_match_the_completions():
    """Before step 1: a reward dividing by len(completion_ids) no longer divides by zero, with or without an answer."""
    rows = [{"prompt": [{"role": "user", "content": "1+1?"}], "solution": "2"}, {"prompt": "2+2=", "completion": "4"}]
    seen = []

    def spy(completions, completion_ids, **kwargs):
        seen.append((completions, completion_ids, kwargs.get("completion")))
        return chars_per_token([chat(c) if isinstance(c, str) else c for c in completions], completion_ids)

    preflight_rewards(RewardFunctions([spy]), rows)
    completions, ids, held_back = seen[0]
    assert completions == [chat("2"), "4"] and [len(i) for i in ids] == [2, 2]  # one token per character + EOS
    assert held_back is None  # the dataset's completion column is not a reward argument, as in TRL


# ------------------------------------------------------------------ a TRL-style dataset, trained on
def test_a_trl_style_run_logs_what_its_rewards_log(tmp_path):
    rows = [{"prompt": [{"role": "user", "content": f"{a}+{a}="}], "solution": str(2 * a), "task": "math",
             "completion": [{"role": "assistant", "content": "never passed to rewards"}]} for a in range(8)]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    steps = []

    def watch(completions, trainer_state, completion=None, **kwargs):
        assert completion is None
        steps.append(trainer_state.global_step)
        return [0.0] * len(completions)

    rewardlab.train("grpo", {
        "model_config": TINY, "output_dir": str(tmp_path), "run_name": "trl", "max_steps": 2, "batch_size": 8,
        "num_generations": 4, "max_completion_length": 4, "tensorboard": False, "logging_steps": 1,
        "num_samples_logged": 2, "dataset": str(tmp_path / "train.jsonl"), "eval_dataset": str(tmp_path / "train.jsonl"),
        "eval_n": 2, "reward_funcs": [format_reward_func, chars_per_token, math_only, async_judge, logging_reward, watch],
    })
    metrics = [json.loads(line) for line in open(tmp_path / "trl" / "metrics.jsonl")]
    train_rows = [m for m in metrics if "reward" in m]
    assert all(m["avg_completion_chars"] >= 0 for m in train_rows) and len(train_rows) == 2
    assert "eval/avg_completion_chars" in metrics[0] and "eval/rewards/async_judge/mean" in metrics[0]
    samples = [json.loads(line) for line in open(tmp_path / "trl" / "samples.jsonl")]
    assert len(samples) == 4 and all(s["completion_chars"] == len(s["completion"]) for s in samples)
    # pre-checks (training and held-out rows), first evaluation, step 1 and 2's rollouts, the final evaluation
    assert steps == [0, 0, 0, 0, 1, 2]


# ------------------------------------------------------------------ TRL-style configs
TRL_GRPO_YAML = {
    "model_name_or_path": "tiny", "learning_rate": 1.0e-3, "per_device_train_batch_size": 4,
    "gradient_accumulation_steps": 2, "num_generations": 4, "max_completion_length": 4, "max_steps": 2,
    "lr_scheduler_type": "linear", "warmup_ratio": 0.5, "logging_steps": 1, "bf16": False, "report_to": "none",
    "gradient_checkpointing": False, "use_vllm": False, "scale_rewards": False, "epsilon_high": None,
    "loss_type": "dapo", "beta": 0.0, "seed": 42, "shuffle_dataset": True, "log_completions": True,
}


def test_a_trl_grpo_yaml_and_flags_train_through_the_alias_table(tmp_path):
    path = tmp_path / "grpo.yaml"
    path.write_text(yaml.safe_dump(TRL_GRPO_YAML))
    cfg = load_config("grpo", path)
    assert (cfg.model, cfg.batch_size, cfg.mini_batch_size, cfg.lr_scheduler, cfg.warmup_steps, cfg.dtype, cfg.tensorboard,
            cfg.scale_rewards, cfg.epsilon_high, cfg.loss_type) == ("tiny", 8, 4, "linear", 1, "float32", False, "none", 0.0, "dapo")
    code = main(["train", "grpo", "--config", str(path), "--learning_rate", "2e-3", "--output_dir", str(tmp_path),
                 "--run_name", "yaml", f"--model_config={json.dumps(TINY)}", "--eval_n", "2", "--loss_type=cispo",
                 "--epsilon_high", "5.0"])
    assert code == 0
    saved = yaml.safe_load((tmp_path / "yaml" / "config.yaml").read_text())
    assert saved["optimisation"]["learning_rate"] == 2e-3 and saved["loss"]["policy_loss"] == "cispo"
    assert len([line for line in open(tmp_path / "yaml" / "metrics.jsonl") if '"reward"' in line]) == 2


def test_trl_command_line_flags_become_settings():
    assert settings_from_flags(["--debug", "train", "grpo", "--config", "c.yaml", "--learning_rate", "1e-6", "--bf16",
                                "beta=0.1", "--per-device-train-batch-size=4", "--max_steps", "-1", "--resume"]) == [
        "--debug", "train", "grpo", "--config", "c.yaml", "learning_rate=1e-6", "bf16=true", "beta=0.1",
        "per_device_train_batch_size=4", "max_steps=-1", "--resume"]
    assert settings_from_flags(["eval", "--model", "m"]) == ["eval", "--model", "m"]


# one case per alias: TRL's settings -> rewardlab's values (a new alias without a case fails the last test)
ALIAS_CASES = {
    "model_name_or_path": ({"model_name_or_path": "tiny"}, {"model": "tiny"}),
    "torch_dtype": ({"torch_dtype": "bfloat16"}, {"dtype": "bfloat16"}),
    "dataset_name": ({"dataset_name": "data/train.jsonl"}, {"dataset": "data/train.jsonl"}),
    "overwrite_output_dir": ({"overwrite_output_dir": True}, {"overwrite": True}),
    "lr_scheduler_type": ({"lr_scheduler_type": "constant_with_warmup"}, {"lr_scheduler": "constant"}),
    "report_to": ({"report_to": ["tensorboard"]}, {"tensorboard": True}),
    "bf16": ({"bf16": True}, {"dtype": "bfloat16"}),
    "fp16": ({"fp16": True}, {"dtype": "float16"}),
    "gradient_checkpointing": ({"gradient_checkpointing": False}, {}),
    "use_vllm": ({"use_vllm": True}, {"engine": "vllm"}),
    "importance_sampling_level": ({"importance_sampling_level": "sequence"}, {"policy_loss": "gspo"}),
    "eval_strategy": ({"eval_strategy": "no", "eval_steps": 5}, {"eval_steps": 0}),
    "save_strategy": ({"save_strategy": "no", "save_steps": 5}, {"save_steps": 0}),
    "log_completions": ({"log_completions": False}, {"num_samples_logged": 0}),
    "num_completions_to_print": ({"num_completions_to_print": 2}, {"num_samples_logged": 2}),
    "resume_from_checkpoint": ({"resume_from_checkpoint": True}, {"resume": True}),
    "optim": ({"optim": "adamw_torch"}, {}),
    "loss_type": ({"loss_type": "nll"}, {}),  # SFT's (the online loop's loss_type is its own field)
    "per_device_train_batch_size": ({"per_device_train_batch_size": 16}, {"batch_size": 16, "mini_batch_size": 0}),
    "gradient_accumulation_steps": ({"per_device_train_batch_size": 8, "gradient_accumulation_steps": 4},
                                    {"batch_size": 32, "mini_batch_size": 8}),
    "warmup_ratio": ({"warmup_ratio": 0.1, "max_steps": 40}, {"warmup_steps": 4}),
    "num_train_epochs": ({"num_train_epochs": 2, "batch_size": 16, "num_generations": 4, "dataset": "DATA"}, {"max_steps": 5}),
    "scale_rewards": ({"scale_rewards": True}, {"scale_rewards": "group"}),
    "epsilon_high": ({"epsilon_high": None}, {"epsilon_high": 0.0}),
    "vllm_importance_sampling_cap": ({"vllm_importance_sampling_cap": 2.0}, {"vllm_importance_sampling_clip_max": 2.0}),
    "vllm_importance_sampling_clip_min": ({"vllm_importance_sampling_clip_min": None}, {"vllm_importance_sampling_clip_min": 0.0}),
    "warmup_steps": ({"warmup_steps": 0.25, "max_steps": 10}, {"warmup_steps": 3}),  # below 1: a ratio (transformers)
    "max_steps": ({"max_steps": -1, "num_train_epochs": 1, "batch_size": 8, "num_generations": 4, "dataset": "DATA"},
                  {"max_steps": 5}),
}


@pytest.mark.parametrize("name", sorted(ALIAS_CASES))
def test_each_trl_alias_translates(name, tmp_path):
    settings, expected = ALIAS_CASES[name]
    data = tmp_path / "ten.jsonl"  # 10 prompt rows: 2 epochs at 4 prompts a step is 5 steps; 1 epoch at 2 is 5
    data.write_text("".join(json.dumps({"prompt": f"{i}+1=", "answer": str(i + 1)}) + "\n" for i in range(10)))
    settings = {k: (str(data) if v == "DATA" else v) for k, v in settings.items()}
    method = "sft" if name == "loss_type" else "grpo"
    cfg = load_config(method, overrides=settings)
    assert {k: getattr(cfg, k) for k in expected} == expected


def test_every_alias_and_value_form_has_a_case():
    assert set(ALIASES) | set(DEFERRED) | set(VALUE_FORMS) | {"warmup_steps", "max_steps"} == set(ALIAS_CASES)


@pytest.mark.parametrize("settings, message", [
    ({"per_device_train_batch_size": 8, "batch_size": 16}, "not both"),
    ({"vllm_mode": "server"}, "colocated in the training process"),
    ({"gradient_checkpointing": True}, "lower mini_batch_size"),
    ({"report_to": "wandb"}, "report_to: tensorboard"),
    ({"lr_scheduler_type": "cosine_with_restarts"}, "constant, linear or cosine"),
    ({"loss_type": "luspo"}, "policy_loss=gspo with loss_type=grpo"),
    ({"loss_type": "sapo", "policy_loss": "gspo"}, "does not combine with policy_loss=gspo"),
    ({"importance_sampling_level": "sequence", "loss_type": "cispo"}, "cispo and sapo use token ratios"),
    ({"importance_sampling_level": "sequence", "policy_loss": "ppo_clip"}, "keep one"),
    ({"vllm_server_port": 9000}, "a vLLM server is not supported"),
    ({"entropy_coef": 0.01}, "no entropy bonus"),
    ({"num_train_epochs": 1}, "needs a dataset"),
    ({"model_name_or_path": "tiny", "model": "other"}, "keep one"),
])
def test_trl_settings_rewardlab_lacks_are_refused_naming_the_equivalent(settings, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config("grpo", overrides=settings)


def test_sapo_temperatures_reach_the_loss(tmp_path):
    """On-policy (one update per rollout) SAPO's loss is -(2 / tau) A per token: the configured temperatures decide it."""
    losses = []
    for name, tau_pos in (("t1", 1.0), ("t4", 4.0)):
        rewardlab.train("grpo", {"model_config": TINY, "output_dir": str(tmp_path), "run_name": name, "max_steps": 1,
                                 "batch_size": 8, "num_generations": 4, "max_completion_length": 4, "eval_n": 1,
                                 "tensorboard": False, "logging_steps": 0, "loss_type": "sapo", "sapo_temperature_pos": tau_pos,
                                 "reward_funcs": ["tests.reward_fixtures:digit_share"]})
        losses.append(json.loads(open(tmp_path / name / "metrics.jsonl").readlines()[1])["loss"])
    assert losses[0] != pytest.approx(losses[1])


def test_trl_loss_types_and_value_forms_from_python():
    """GRPOConfig built directly takes TRL's forms too; loss_type cispo/sapo pick the policy loss."""
    cfg = GRPOConfig(scale_rewards=False, epsilon_high=None, loss_type="sapo")
    assert (cfg.scale_rewards, cfg.epsilon_high, cfg.policy_loss) == ("none", 0.0, "sapo")
    assert load_config("grpo", overrides={"loss_type": "cispo", "epsilon_high": 5.0}).policy_loss == "cispo"
    for loss_type in ("grpo", "dr_grpo", "dapo", "bnpo"):
        assert load_config("grpo", overrides={"loss_type": loss_type}).policy_loss == "ppo_clip"


def _trl_names() -> dict[str, set[str]]:
    """Every setting of TRL's GRPO, DPO, SFT and KTO configs (their own, and the TrainingArguments ones TRL's
    examples set), by trainer."""
    trl = pytest.importorskip("trl")
    common = {"output_dir", "per_device_train_batch_size", "gradient_accumulation_steps", "learning_rate", "weight_decay",
              "max_grad_norm", "num_train_epochs", "max_steps", "lr_scheduler_type", "warmup_ratio", "warmup_steps",
              "logging_steps", "save_steps", "save_total_limit", "eval_steps", "eval_strategy", "save_strategy", "seed",
              "bf16", "fp16", "gradient_checkpointing", "report_to", "run_name", "push_to_hub", "optim",
              "resume_from_checkpoint", "overwrite_output_dir", "per_device_eval_batch_size", "model_name_or_path",
              "dataset_name", "torch_dtype"}
    from transformers import TrainingArguments

    base = {f.name for f in dataclasses.fields(TrainingArguments)}
    return {kind: {f.name for f in dataclasses.fields(cls) if f.name not in base} | common
            for kind, cls in (("grpo", trl.GRPOConfig), ("dpo", trl.DPOConfig), ("sft", trl.SFTConfig), ("kto", trl.KTOConfig))}


def test_every_trl_config_name_is_mapped_refused_or_rewardlab_s_own_and_in_the_guide():
    from pathlib import Path

    from rewardlab.config import METHOD_PRESETS

    guide = (Path(__file__).resolve().parents[1] / "docs" / "from_trl.md").read_text()
    for kind, names in _trl_names().items():
        fields = {f.name for f in dataclasses.fields(METHOD_PRESETS[kind][0])}
        for name in sorted(names):
            assert name in fields | set(ALIASES) | set(DEFERRED) | set(UNSUPPORTED), f"TRL's {kind} setting {name} has no answer"
            assert f"`{name}`" in guide, f"docs/from_trl.md does not list TRL's {kind} setting {name}"


# TRL's example configs for SFT, DPO and KTO (the settings its docs' YAML examples use), with local files in
# TRL's formats for dataset_name; translated by the alias table only, two steps each on the tiny model
TRL_OFFLINE = {
    "sft": ({"learning_rate": 2.0e-4, "max_length": 64, "packing": False, "assistant_only_loss": False,
             "dataset_text_field": "text"},
            [{"messages": [{"role": "user", "content": "2+2="}, {"role": "assistant", "content": "4"}]},
             {"messages": [{"role": "user", "content": "3+4="}, {"role": "assistant", "content": "7"}]}]),
    "dpo": ({"learning_rate": 5.0e-6, "beta": 0.1, "max_length": 64, "loss_type": "sigmoid"},
            [{"prompt": "2+2=", "chosen": "4", "rejected": "5"}, {"prompt": "3+4=", "chosen": "7", "rejected": "8"}]),
    "kto": ({"learning_rate": 5.0e-7, "beta": 0.1, "desirable_weight": 1.0, "undesirable_weight": 1.0, "max_length": 64},
            [{"prompt": "2+2=", "completion": "4", "label": True}, {"prompt": "3+4=", "completion": "8", "label": False},
             {"prompt": "1+1=", "completion": "2", "label": True}, {"prompt": "5+2=", "completion": "9", "label": False}]),
}
TRL_COMMON = {"model_name_or_path": "tiny", "per_device_train_batch_size": 2, "gradient_accumulation_steps": 1,
              "max_steps": 2, "logging_steps": 1, "lr_scheduler_type": "cosine", "warmup_ratio": 0.1,
              "gradient_checkpointing": False, "bf16": False, "report_to": "none", "eval_strategy": "no", "seed": 42}


@pytest.mark.parametrize("method", sorted(TRL_OFFLINE))
def test_trl_example_configs_for_sft_dpo_and_kto_train_two_steps(tmp_path, method):
    settings, rows = TRL_OFFLINE[method]
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    path = tmp_path / f"{method}.yaml"
    path.write_text(yaml.safe_dump({**TRL_COMMON, **settings, "dataset_name": str(data), "output_dir": str(tmp_path)}))
    code = main(["train", method, "--config", str(path), "--run_name", method, f"--model_config={json.dumps(TINY)}",
                 "--eval_n", "2", "--torch_threads", "1"])
    assert code == 0
    steps = [json.loads(line)["step"] for line in open(tmp_path / method / "metrics.jsonl") if '"loss"' in line]
    assert steps[:2] == [1, 2]
