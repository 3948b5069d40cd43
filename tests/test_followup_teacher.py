"""The follow-up self-teacher (teacher_context=followup): the simulated user, the dialogue's second turns in
the cold start, the teacher's prompts by hand, and a run on the one loop."""

import json
from types import SimpleNamespace

import pytest

import rewardlab
from rewardlab.config import ConfigError, load_config
from rewardlab.tasks import make_task
from rewardlab.trainers.self_distill import SelfTeacher

SMALL = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 2}


def test_simulated_user_complains_with_a_direction():
    task = make_task("arithmetic", max_digits=2)
    record = {"prompt": "17+25=", "answer": "42"}
    assert task.followup(record, "42") is None  # satisfied: no follow-up
    assert task.followup(record, "32") == "no, too small"
    assert task.followup(record, "52\n") == "no, too big"
    assert task.followup(record, "4x") == "no, a number"
    reverse = make_task("arithmetic", max_digits=2, reverse_answer=True)  # answers least-significant digit first
    assert reverse.followup({"prompt": "17+25=", "answer": "24"}, "23") == "no, too small"  # 32 < 42


def test_second_turns_are_train_only_and_end_in_the_right_answer():
    task = make_task("arithmetic", max_digits=2, followup_rate=0.5)
    train = task.generate(400, seed=0, split="train")
    second = [r for r in train if "\n" in r["prompt"]]
    assert 0.4 < len(second) / len(train) < 0.6
    for r in second:
        first_line, feedback = r["prompt"].split("\n")[:2]
        problem, first = first_line.split("=")
        assert first != r["answer"] and r["completion"] == r["answer"]
        assert feedback == task.followup({"answer": r["answer"]}, first)
        assert task.canonical(r) == task.canonical({"prompt": problem + "="})
    assert not any("\n" in r["prompt"] for r in task.generate(300, seed=0, split="test"))


def test_followup_teacher_prompts_by_hand():
    cfg = load_config("sdpo", None, {"teacher_context": "followup"})
    teacher = SelfTeacher.__new__(SelfTeacher)
    teacher.cfg, teacher.user = cfg, make_task("arithmetic").followup
    rollout = SimpleNamespace(completions_text=["42", "32", "4x"])
    records = [{"prompt": "17+25=", "answer": "42"}] * 3
    assert teacher.teacher_prompts(rollout, records, None) == [None, "17+25=32\nno, too small\n", "17+25=4x\nno, a number\n"]
    chat = [{"prompt": [{"role": "user", "content": "17+25="}], "answer": "42"}]
    assert teacher.teacher_prompts(SimpleNamespace(completions_text=["52"]), chat, None) == [[
        {"role": "user", "content": "17+25="}, {"role": "assistant", "content": "52"}, {"role": "user", "content": "no, too big"}]]


def test_followup_needs_a_simulated_user():
    with pytest.raises(ConfigError, match="teacher_context=followup needs a built-in task with a simulated user"):
        load_config("sdpo", None, {"teacher_context": "followup", "task": "countdown"})


def test_sdpo_with_the_followup_teacher_runs(tmp_path):
    options = {"max_digits": 1, "followup_rate": 0.3}
    base = {"tensorboard": False, "torch_threads": 1, "output_dir": str(tmp_path), "task_options": options}
    rewardlab.train("sft", {**base, "model_config": SMALL, "run_name": "sft", "max_steps": 3, "batch_size": 8, "eval_n": 4})
    rewardlab.train("sdpo", {**base, "run_name": "sdpo", "model": str(tmp_path / "sft" / "final"), "teacher_context": "followup",
                             "max_steps": 2, "batch_size": 8, "num_generations": 4, "max_completion_length": 3, "eval_n": 4})
    rows = [json.loads(line) for line in open(tmp_path / "sdpo" / "metrics.jsonl") if '"self_distill/rows"' in line]
    assert [r["step"] for r in rows] == [1, 2]
    # the user follows up on every wrong answer: the distilled share is the share of wrong completions
    assert all(r["self_distill/rows"] == pytest.approx(1 - r["rewards/arithmetic_reward/mean"], abs=1e-6) for r in rows)


def test_chain_user_points_at_the_first_wrong_line():
    task = make_task("chain")
    record = {"prompt": "7+5+9+3=", "answer": "24"}  # running sums 12, 21, 24
    assert task.followup(record, "12\n21\n24") is None
    assert task.followup(record, "12\n22\n25") == "no, line 2 is wrong"
    assert task.followup(record, "12\n22\n24") == "no, line 2 is wrong"  # right total, invalid step
    assert task.followup(record, "12\n21") == "no, a line is missing"
    assert task.followup(record, "12\n21\n24\n24") == "no, a line too many"
    second = [r for r in make_task("chain", followup_rate=0.5).generate(200, seed=0, split="train") if "\n" in r["prompt"]]
    assert second and all(r["prompt"].endswith(" is wrong\n") and task.followup(r, r["completion"]) is None for r in second)
    assert all(task.canonical(r) == task.canonical({"prompt": r["prompt"].split("=")[0] + "="}) for r in second)
