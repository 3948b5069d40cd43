"""FlowRL on the online driver: it runs, learns log Z, and keeps the head out of the exported model."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModelForCausalLM

import rewardlab
from rewardlab.config import ConfigError, load_config
from rewardlab.trainers.flowrl import LogZHead

TINY = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 2}


def small(tmp_path, **overrides):
    base = {"model_config": TINY, "output_dir": str(tmp_path), "eval_n": 8, "max_steps": 3, "tensorboard": False,
            "torch_threads": 1, "batch_size": 16, "num_generations": 4, "max_completion_length": 4,
            "reward_funcs": ["tests.reward_fixtures:digit_share"]}
    return {**base, **overrides}


def test_flowrl_runs_on_the_one_loop_and_exports_only_the_policy(tmp_path):
    summary = rewardlab.train("flowrl", small(tmp_path, run_name="flowrl", save_steps=2, num_iterations=2,
                                              flowrl_importance="clamp"))
    assert summary["method"] == "flowrl"
    rows = [json.loads(line) for line in open(tmp_path / "flowrl" / "metrics.jsonl")]
    steps = [r for r in rows if "reward" in r]
    assert [r["step"] for r in steps] == [1, 2, 3]
    for key in ("flowrl/delta_mean", "flowrl/log_z_mean", "flowrl/importance_weight_mean", "log_z_grad_norm", "kl"):
        assert key in steps[0], key
    # the head trains: its output moves between steps (its own AdamW at log_z_learning_rate)
    assert steps[0]["flowrl/log_z_mean"] != steps[-1]["flowrl/log_z_mean"]
    # the second update of each rollout sees a moved policy, so the importance weights leave 1
    assert any(abs(r["flowrl/importance_weight_mean"] - 1.0) > 1e-7 for r in steps)
    # final/ holds the policy alone: its weights are exactly a tiny Llama's, no log Z parameters
    exported = AutoModelForCausalLM.from_pretrained(tmp_path / "flowrl" / "final")
    assert not any("log_z" in name or "net." in name for name in exported.state_dict())
    # the checkpoint carries the head (and its optimizer) for --resume
    state = torch.load(tmp_path / "flowrl" / "checkpoint-2" / "trainer_state.pt", weights_only=False)
    assert "head" in state["extra"]["log_z"]


def test_log_z_head_shape_and_reads_the_prompt():
    head = LogZHead(8)
    out = head(torch.randn(5, 8))
    assert out.shape == (5,)


def test_flowrl_config_errors_name_the_fix():
    with pytest.raises(ConfigError, match="flowrl_importance"):
        load_config("flowrl", overrides={"flowrl_importance": "ppo"})
    with pytest.raises(ConfigError, match="advantage=grpo"):
        load_config("flowrl", overrides={"advantage": "gae"})
