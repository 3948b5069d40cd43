import json

import pytest
import torch
from transformers import AutoModelForCausalLM

import rewardlab
from rewardlab.algos import AGGREGATIONS
from rewardlab.config import load_config
from rewardlab.trainers.policy_update import minibatch_weight

TINY = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 2}


def small(tmp_path, **overrides):
    base = {
        "model_config": TINY,
        "output_dir": str(tmp_path),
        "eval_n": 8,
        "max_steps": 3,
        "tensorboard": False,
        "torch_threads": 1,
    }
    return {**base, **overrides}


def test_sft_then_grpo_write_the_run_directory_layout(tmp_path):
    sft = rewardlab.train("sft", small(tmp_path, run_name="sft", batch_size=8, save_steps=2))
    assert 0.0 <= sft["eval_accuracy"] <= 1.0
    grpo = rewardlab.train(
        "grpo",
        small(tmp_path, model=str(tmp_path / "sft" / "final"), model_config={}, run_name="grpo", batch_size=16,
              num_generations=4, max_completion_length=4, save_steps=2, logging_steps=1),
    )
    run = tmp_path / "grpo"
    for name in ["config.yaml", "metrics.jsonl", "summary.json", "samples.jsonl", "checkpoint-2", "final"]:
        assert (run / name).exists(), name
    assert list((run / "plots").glob("*.png"))
    rows = [json.loads(line) for line in open(run / "metrics.jsonl")]
    steps = [r["step"] for r in rows if "reward" in r]
    assert steps == [1, 2, 3]
    for key in ["reward", "kl", "entropy", "clip_fraction", "grad_norm", "zero_variance_groups", "completion_length",
                "truncation_rate", "tokens_per_s", "time/generate", "time/score", "time/train"]:
        assert key in rows[1], key
    assert json.loads((run / "summary.json").read_text())["eval_accuracy"] == grpo["eval_accuracy"]
    model = AutoModelForCausalLM.from_pretrained(run / "final")
    assert model.config.hidden_size == 32


def test_batch_size_not_a_multiple_of_the_group_is_adjusted_not_a_crash(caplog):
    cfg = load_config("grpo", overrides={"batch_size": 30, "num_generations": 8})
    assert cfg.batch_size == 24 and cfg.prompts_per_step == 3
    assert "using batch_size 24" in caplog.text


@pytest.mark.parametrize("aggregation", ["token_mean", "seq_mean_token_mean", "seq_mean_token_sum_norm"])
def test_minibatch_accumulation_equals_the_full_batch_loss(aggregation):
    per_token = torch.rand(6, 5)
    mask = (torch.rand(6, 5) > 0.3).long()
    mask[:, 0] = 1
    full = AGGREGATIONS[aggregation](per_token, mask, 5)
    parts = [slice(0, 2), slice(2, 5), slice(5, 6)]
    accumulated = sum(
        AGGREGATIONS[aggregation](per_token[p], mask[p], 5) * minibatch_weight(aggregation, mask, p, 6) for p in parts
    )
    assert abs(float(full) - float(accumulated)) < 1e-6


@pytest.mark.parametrize(
    "method,extra",
    [
        ("dapo", {"overlong_buffer": 2}),
        ("gspo", {}),
        ("rloo", {"beta": 0.04}),
        ("dr_grpo", {"num_iterations": 2, "mini_batch_size": 8}),
        ("reinforce_pp", {}),
        ("ppo", {"num_iterations": 2, "mini_batch_size": 8, "kl_target": 0.5}),
    ],
)
def test_every_variant_runs_on_the_one_loop(tmp_path, method, extra):
    summary = rewardlab.train(
        method,
        small(tmp_path, run_name=method, batch_size=16, num_generations=4, max_completion_length=4, max_steps=2,
              reward_funcs=["tests.reward_fixtures:digit_share"], **extra),
    )
    rows = [json.loads(line) for line in open(tmp_path / method / "metrics.jsonl")]
    assert [r["step"] for r in rows if "reward" in r] == [1, 2]
    assert summary["method"] == method
    if method in ("ppo", "reinforce_pp"):  # the KL penalty moved into the reward, and is logged there
        assert all("kl_penalty/sequence_kl" in r and r["kl_penalty/beta"] > 0 for r in rows if "reward" in r)
    if method == "ppo":  # the critic learns alongside
        assert all(k in rows[1] for k in ("value_loss", "explained_variance", "value_clip_fraction", "value_grad_norm"))
        assert rows[1]["kl_penalty/beta"] != 0.05  # adaptive: moved toward kl_target


def test_lora_reference_is_the_base_with_the_adapter_disabled(tmp_path):
    from rewardlab.trainers.reference import Reference

    rewardlab.train("sft", small(tmp_path, run_name="sft", batch_size=8, max_steps=1))
    summary = rewardlab.train(
        "grpo",
        small(tmp_path, model=str(tmp_path / "sft" / "final"), model_config={}, run_name="lora", lora_r=4,
              batch_size=8, num_generations=4, max_completion_length=4, max_steps=2, learning_rate=0.05, beta=0.1,
              reward_funcs=["tests.reward_fixtures:digit_share"]),
    )
    assert summary["steps"] == 2
    rows = [json.loads(line) for line in open(tmp_path / "lora" / "metrics.jsonl") if "kl" in line]
    assert rows[0]["kl"] == pytest.approx(0.0, abs=1e-6)  # adapter starts at zero: policy == reference
    assert rows[-1]["kl"] > 0  # the adapter moved, the reference did not
    assert (tmp_path / "lora" / "final" / "adapter" / "adapter_config.json").is_file()
    from rewardlab.models import apply_lora, load_policy

    policy = apply_lora(load_policy(str(tmp_path / "sft" / "final"))[0], r=4, alpha=16)
    reference = Reference(policy, None)
    assert reference.copy is None  # no second copy of the weights


def test_eval_uses_the_task_options_the_model_was_trained_with(tmp_path, capsys):
    from rewardlab.cli import main
    from rewardlab.tasks import make_task

    options = {"max_digits": 2, "reverse_answer": True}
    rewardlab.train("sft", small(tmp_path, run_name="sft", batch_size=8, task_options=options))
    assert main(["eval", "--model", str(tmp_path / "sft" / "final"), "--n", "6", "--seed", "3"]) == 0
    assert '"reverse_answer": true' in capsys.readouterr().out
    rows = [json.loads(line) for line in open(tmp_path / "sft" / "final" / "eval-arithmetic-seed3.jsonl")]
    expected = make_task("arithmetic", **options).generate(6, seed=3, split="test")
    assert [r["answer"] for r in rows] == [r["answer"] for r in expected]  # reversed answers, as in training
    # an explicit --task-options wins over the run's config
    assert main(["eval", "--model", str(tmp_path / "sft" / "final"), "--n", "6", "--seed", "3", "--task-options", "{}"]) == 0
    assert "config.yaml" not in capsys.readouterr().out


def test_accuracy_by_carry_splits_additions():
    from rewardlab.tasks.arithmetic import accuracy_by_carry

    rows = [
        {"prompt": "17+25=", "correct": True},   # 7+5 carries
        {"prompt": "95+8=", "correct": False},   # 5+8 carries
        {"prompt": "12+30=", "correct": True},   # no carry
        {"prompt": [{"role": "user", "content": "40+41="}], "correct": True},  # chat prompt, no carry
    ]
    assert accuracy_by_carry(rows) == {"carry": 0.5, "no_carry": 1.0, "n_carry": 2, "n_no_carry": 2}


def test_ppo_against_a_reward_model_watches_the_task_gold(tmp_path):
    """With reward_model set, the reward is the model's score; the task's gold scorer is only watched."""
    common = small(tmp_path, task="preference", model_config=TINY)
    rewardlab.train("rm", {**common, "run_name": "rm", "max_steps": 2, "batch_size": 4, "eval_n": 4})
    rewardlab.train(
        "ppo",
        {**common, "run_name": "ppo", "reward_model": str(tmp_path / "rm" / "final"), "batch_size": 8,
         "num_generations": 4, "max_completion_length": 4, "max_steps": 4, "eval_steps": 1, "num_iterations": 1},
    )
    rows = [json.loads(line) for line in open(tmp_path / "ppo" / "metrics.jsonl")]
    steps = [r for r in rows if "reward" in r]
    assert [r["step"] for r in steps] == [1, 2, 3, 4]
    for row in steps:
        # the reward is the reward model's score alone (no task reward added), the gold is logged beside it
        assert row["reward"] == pytest.approx(row["rewards/reward_model/mean"], abs=1e-6)
        assert 0.0 <= row["gold_reward"] <= 1.0 and "rewards/gold_reward/mean" not in row
    evals = [r for r in rows if "hacking/gold" in r]
    assert [r["step"] for r in evals] == [1, 2, 3, 4]  # every eval step, the last one included
    assert all(r["hacking/alarm"] in (0.0, 1.0) and r["hacking/sqrt_kl"] >= 0 for r in evals)
    assert evals[0]["hacking/sqrt_kl"] < 0.05  # the first point is the starting policy


def test_several_updates_per_rollout_without_warmup_get_advice():
    from rewardlab.config import load_config
    from rewardlab.trainers.online import warmup_advice

    assert "warmup_steps=10" in warmup_advice(load_config("ppo", None, {}))  # the preset: 4 epochs, no warm-up
    assert warmup_advice(load_config("ppo", None, {"warmup_steps": 10})) is None
    assert warmup_advice(load_config("grpo", None, {})) is None  # one update per rollout
