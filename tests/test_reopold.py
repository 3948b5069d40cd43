"""REOPOLD (docs/algorithms.md#reopold): the clipped token reward and token mask by hand, the two phases in a
run, and the student moving toward the teacher."""

import json
import math

import pytest
import torch

import rewardlab
from rewardlab.algos import reopold_advantages
from rewardlab.config import ConfigError, load_config

from .test_distill_trainers import BASE, STUDENT, teacher_dir  # noqa: F401  (the fixture)


def test_reopold_by_hand():
    # three tokens: student 0.9 / teacher 0.01, student 0.2 / teacher 0.5, student 0.5 / teacher 0.4
    student = torch.log(torch.tensor([[0.9, 0.2, 0.5]]))
    teacher = torch.log(torch.tensor([[0.01, 0.5, 0.4]]))
    entropy = torch.tensor([[2.0, 0.5, 1.0]])
    mask = torch.ones(1, 3)
    floor = math.log(0.3 / 0.7)  # -0.8473
    reward = [math.log(0.01 / 0.9), math.log(2.5), math.log(0.8)]  # -4.4998, 0.9163, -0.2231

    adv, keep, metrics = reopold_advantages(student, teacher, entropy, mask, lam=0.3, top=1 / 3, phase="explore")
    assert keep.tolist() == [[False, True, True]]  # the first token's reward is below the floor: left out
    assert adv[0].tolist() == pytest.approx([0.0, reward[1], reward[2]], abs=1e-5)
    assert metrics["reopold/below_floor"] == pytest.approx(1 / 3)

    adv, keep, _ = reopold_advantages(student, teacher, entropy, mask, lam=0.3, top=1.0, phase="refine")
    assert keep.all()
    assert adv[0].tolist() == pytest.approx([floor, reward[1], reward[2]], abs=1e-5)  # clipped to the floor

    # the entropy threshold is the batch's 2/3 quantile of [0.5, 1.0, 2.0] = 1.333: only the first token is trained
    adv, keep, metrics = reopold_advantages(student, teacher, entropy, mask, lam=0.3, top=1 / 3, phase="refine")
    assert keep.tolist() == [[True, False, False]]
    assert adv[0].tolist() == pytest.approx([floor, 0.0, 0.0], abs=1e-5)
    assert metrics["reopold/kept"] == pytest.approx(1 / 3)

    padded = reopold_advantages(student, teacher, entropy, torch.tensor([[1.0, 1.0, 0.0]]), lam=0.3, top=1.0, phase="refine")
    assert padded[0][0, 2] == 0 and not padded[1][0, 2]
    with pytest.raises(ValueError, match="lam must be in"):
        reopold_advantages(student, teacher, entropy, mask, lam=1.0)


def test_reopold_explores_then_refines(tmp_path, teacher_dir):  # noqa: F811
    rewardlab.train("reopold", {**BASE, "model_config": STUDENT, "teacher": str(teacher_dir), "output_dir": str(tmp_path),
                                "run_name": "r", "max_steps": 4, "batch_size": 16, "max_completion_length": 4,
                                "reopold_switch": 0.5, "reopold_entropy_top": 0.25})
    rows = [json.loads(line) for line in open(tmp_path / "r" / "metrics.jsonl") if '"reopold/kept"' in line]
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    for r in rows[:2]:  # exploring: every token above the floor
        assert r["reopold/kept"] == pytest.approx(1 - r["reopold/below_floor"], abs=1e-6)
    for r in rows[2:]:  # refining: the highest-entropy quarter (ties at the threshold kept)
        assert 0.2 <= r["reopold/kept"] <= 0.35


def test_reopold_moves_the_student_toward_the_teacher(tmp_path, teacher_dir):  # noqa: F811
    rewardlab.train("reopold", {**BASE, "model_config": STUDENT, "teacher": str(teacher_dir), "output_dir": str(tmp_path),
                                "run_name": "r", "max_steps": 25, "batch_size": 16, "max_completion_length": 4,
                                "learning_rate": 1e-2, "lr_scheduler": "constant"})
    rows = [json.loads(line) for line in open(tmp_path / "r" / "metrics.jsonl") if '"reverse_kl"' in line]
    first, last = sum(r["reverse_kl"] for r in rows[:5]) / 5, sum(r["reverse_kl"] for r in rows[-5:]) / 5
    assert last < 0.5 * first, (first, last)


def test_reopold_settings_are_checked():
    with pytest.raises(ConfigError, match="reopold_lambda must be in"):
        load_config("reopold", None, {"teacher": "x", "reopold_lambda": 0.0})
    with pytest.raises(ConfigError, match="leave lmbda at 1"):
        load_config("reopold", None, {"teacher": "x", "lmbda": 0.5})
