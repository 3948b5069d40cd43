"""`rewardlab train distill` and the sdpo/rlsd/srpo objectives of the online driver, on tiny models."""

from __future__ import annotations

import json

import pytest
import torch

import rewardlab
from rewardlab.config import ConfigError, load_config
from rewardlab.trainers.self_distill import teacher_contexts

TEACHER = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 2}
STUDENT = {"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 2}
BASE = {"eval_n": 8, "tensorboard": False, "torch_threads": 1}


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("teacher")
    rewardlab.train("sft", {**BASE, "model_config": TEACHER, "output_dir": str(out), "run_name": "t", "max_steps": 3, "batch_size": 8})
    return out / "t" / "final"


@pytest.mark.parametrize(
    "extra",
    [
        {"loss_type": "opd"},
        {"loss_type": "opd", "opd_lambda": 1.5},
        {"loss_type": "gkd", "beta": 0.5, "lmbda": 0.5},
        {"loss_type": "gkd", "beta": 0.0, "lmbda": 0.0, "off_policy_source": "dataset"},
        {"loss_type": "sft", "off_policy_source": "teacher"},
    ],
)
def test_distill_runs_every_loss_into_a_smaller_student(tmp_path, teacher_dir, extra):
    summary = rewardlab.train("distill", {**BASE, "model_config": STUDENT, "teacher": str(teacher_dir), "output_dir": str(tmp_path),
                                          "run_name": "d", "max_steps": 2, "batch_size": 4, "max_completion_length": 4, **extra})
    assert summary["student_parameters"] * 4 <= summary["teacher_parameters"]
    rows = [json.loads(line) for line in open(tmp_path / "d" / "metrics.jsonl")]
    steps = [r for r in rows if "loss" in r]
    assert [r["step"] for r in steps] == [1, 2]
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in steps)
    if extra["loss_type"] == "opd":
        assert all(r["on_policy"] == 1.0 and "reverse_kl" in r for r in steps)
    if extra.get("lmbda") == 0.0 or extra["loss_type"] == "sft":
        assert all(r["on_policy"] == 0.0 for r in steps)


def test_distill_errors_say_what_to_do(tmp_path):
    with pytest.raises(ConfigError, match="needs teacher="):
        load_config("distill")
    with pytest.raises(ConfigError, match="leave lmbda at 1"):
        load_config("distill", overrides={"teacher": "x", "lmbda": 0.5})
    with pytest.raises(FileNotFoundError, match="not found; pass a run's final/"):
        rewardlab.train("distill", {**BASE, "teacher": str(tmp_path / "missing"), "output_dir": str(tmp_path), "run_name": "d"})
    assert not (tmp_path / "d").exists()  # nothing written before the check


def test_opd_gradient_direction_moves_the_student_toward_the_teacher(tmp_path, teacher_dir):
    """Reverse KL(student || teacher) on the student's samples falls when training on the opd advantage."""
    summary = rewardlab.train("distill", {**BASE, "model_config": STUDENT, "teacher": str(teacher_dir), "output_dir": str(tmp_path),
                                          "run_name": "d", "max_steps": 25, "batch_size": 16, "max_completion_length": 4,
                                          "learning_rate": 1e-2, "lr_scheduler": "constant"})
    rows = [json.loads(line) for line in open(tmp_path / "d" / "metrics.jsonl") if '"reverse_kl"' in line]
    first, last = sum(r["reverse_kl"] for r in rows[:5]) / 5, sum(r["reverse_kl"] for r in rows[-5:]) / 5
    assert last < 0.5 * first, (first, last)
    assert summary["steps"] == 25


def test_teacher_contexts_pick_another_successful_sibling_or_the_answer():
    completions, rewards, groups = ["a", "b", "c", "d", "e"], [1.0, 0.0, 1.0, 0.0, 0.0], [0, 0, 0, 1, 1]
    # row 0 (a success) gets the next success after it (c), never itself; rows 1 and 2 likewise; group 1 has none
    assert teacher_contexts(completions, rewards, groups, [None] * 5, "sibling", 1.0) == ["c", "c", "a", None, None]
    assert teacher_contexts(completions, rewards, groups, ["1", "2", "3", "4", None], "answer", 1.0) == ["1", "2", "3", "4", None]


@pytest.mark.parametrize("method, extra", [("sdpo", {}), ("sdpo", {"sdpo_mix": 0.5, "self_teacher": "policy"}), ("rlsd", {}), ("srpo", {})])
def test_self_distillation_objectives_run_on_the_one_loop(tmp_path, method, extra):
    summary = rewardlab.train(method, {**BASE, "model_config": STUDENT, "output_dir": str(tmp_path), "run_name": method,
                                       "max_steps": 2, "batch_size": 16, "num_generations": 4, "max_completion_length": 4,
                                       "reward_funcs": ["tests.reward_fixtures:digit_share"], "success_reward": 0.5,
                                       "save_steps": 1, **extra})
    assert summary["method"] == method
    rows = [json.loads(line) for line in open(tmp_path / method / "metrics.jsonl")]
    steps = [r for r in rows if "reward" in r]
    assert [r["step"] for r in steps] == [1, 2]
    if method in ("sdpo", "srpo"):
        assert all(0.0 <= r["self_distill/rows"] <= 1.0 and "self_distill/reverse_kl" in r for r in steps)
    if extra.get("self_teacher", "ema") == "ema":
        state = torch.load(tmp_path / method / "checkpoint-1" / "trainer_state.pt", weights_only=False)
        assert "ema" in state["extra"]["self_teacher"]
