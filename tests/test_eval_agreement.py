"""Held-out evaluation agrees with training: the verifier that decides accuracy and the training reward of the
same name judge every completion alike, for every built-in task, plain and chat; evaluation runs on the user's
eval data with the user's reward functions; the built-in task is used only when the user gave no data."""

from __future__ import annotations

import json

import pytest
import torch

import rewardlab
from rewardlab.config import load_config
from rewardlab.models import build_char_tokenizer
from rewardlab.rewards.base import _function_name
from rewardlab.rewards.scoring import score
from rewardlab.rollout import Rollout
from rewardlab.tasks.preference import prompt_letters
from rewardlab.trainers.evaluate import judge
from rewardlab.trainers.inputs import eval_records, eval_source, reward_functions, task_of, verifier

TINY = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 2}


def _rollout(texts: list[str]) -> Rollout:
    """A rollout holding these completions (what score() reads: text, token ids, mask, finish reasons)."""
    tok = build_char_tokenizer()
    ids = [tok(t, add_special_tokens=False)["input_ids"] + [tok.eos_token_id] for t in texts]
    width = max(len(i) for i in ids)
    completion = torch.tensor([i + [tok.pad_token_id] * (width - len(i)) for i in ids])
    mask = torch.tensor([[1] * len(i) + [0] * (width - len(i)) for i in ids])
    one = torch.ones(len(texts), 1, dtype=torch.long)
    return Rollout(one, one, completion, mask, torch.zeros(mask.shape), torch.arange(len(texts)), ["eos"] * len(texts),
                   completions_text=texts)


def _candidates(record: dict) -> list[str]:
    """Completions to judge: the reference, the reference with a full stop, the prompt echoed before it (what a chat
    model writes: "6+2=8."), a wrong one. The preference task's reference is the perfect reply (its letters, sorted)."""
    prompt = record["prompt"] if isinstance(record["prompt"], str) else record["prompt"][-1]["content"]
    answer = str(record["answer"]) if "answer" in record else "".join(sorted(prompt_letters(record["prompt"])))
    return [answer, answer + ".", f"{prompt.rstrip(':')}{answer}.", "zzz"]


# every built-in task with its default reward, and the SmolLM2 case: the arithmetic task trained with `math`
CASES = [("arithmetic", []), ("arithmetic", ["math"]), ("countdown", []), ("preference", []), ("code", [])]


@pytest.mark.parametrize("chat", [False, True], ids=["plain", "chat"])
@pytest.mark.parametrize("task, reward_funcs", CASES, ids=[f"{t}-{'+'.join(r) or 'default'}" for t, r in CASES])
def test_the_eval_verifier_and_the_training_reward_of_the_same_name_judge_alike(task, reward_funcs, chat):
    cfg = load_config("grpo", overrides={"task": task, "task_options": {"chat": chat}, "reward_funcs": reward_funcs})
    held_out = eval_records(cfg, n=3)
    records = [r for r in held_out for _ in range(4)]
    texts = [text for r in held_out for text in _candidates(r)]
    rewards, verify = reward_functions(cfg), verifier(cfg)
    name = _function_name(verify)
    assert name in rewards.names, f"accuracy is decided by {name}, which training does not optimise ({rewards.names})"

    trained = score(cfg, _rollout(texts), records, rewards, None, None, "cpu").per_function[name]  # the training path
    rollout = _rollout(texts)
    ids = [row[m.bool()].tolist() for row, m in zip(rollout.completion_ids, rollout.completion_mask)]
    verdict = judge(records, texts, ids, verify, rewards)  # the evaluation path
    assert verdict.correct == [bool(v >= 1.0) for v in trained.tolist()]
    assert verdict.rewards[name] == pytest.approx(trained.tolist(), nan_ok=True)
    if not reward_funcs:  # the task's own verify(completion, record) is the same judge
        assert [task_of(cfg).verify(t, r) for t, r in zip(texts, records)] == verdict.correct
    assert any(verdict.correct), "the reference answer must count as correct"
    if task == "arithmetic" and reward_funcs == ["math"]:  # "6+2=8.": right for math, so right at evaluation too
        assert verdict.correct[2] and trained[2] == 1.0


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


def _small(tmp_path, **overrides):
    return {"model_config": TINY, "output_dir": str(tmp_path), "max_steps": 1, "batch_size": 8, "num_generations": 4,
            "max_completion_length": 4, "eval_n": 4, "tensorboard": False, "logging_steps": 0, **overrides}


def test_evaluation_uses_the_users_eval_data_and_reward_functions(tmp_path):
    """A TRL-style eval_dataset with a `solution` column: the default reward and verifier read it (no TypeError);
    the summary names the data and the verifier, and each reward function's held-out mean is logged."""
    rows = [{"prompt": f"{a}+{a}=", "solution": str(2 * a)} for a in range(1, 9)]
    summary = rewardlab.train("grpo", _small(tmp_path, run_name="solution", dataset=_jsonl(tmp_path / "train.jsonl", rows),
                                             eval_dataset=_jsonl(tmp_path / "eval.jsonl", rows[:4])))
    assert summary["eval_data"].startswith("eval_dataset ") and summary["eval_verifier"] == "math_reward"
    assert set(summary["eval_rewards"]) == {"math_reward"} and summary["eval_accuracy"] is not None
    logged = [json.loads(line) for line in open(tmp_path / "solution" / "metrics.jsonl")]
    assert "eval/rewards/math_reward/mean" in logged[0] and "eval/accuracy" in logged[0]
    evaluated = [json.loads(line)["prompt"] for line in open(tmp_path / "solution" / "eval_samples.jsonl")]
    assert evaluated == [r["prompt"] for r in rows[:4]]  # the user's held-out rows, not the built-in task's


def test_ground_truth_and_custom_rewards_without_a_verifier_give_means_not_accuracy(tmp_path):
    rows = [{"prompt": f"{a}+1=", "ground_truth": str(a + 1)} for a in range(8)]

    def short(completions, **kwargs):
        return [-float(len(c)) for c in completions]

    cfg = _small(tmp_path, run_name="custom", dataset=_jsonl(tmp_path / "train.jsonl", rows), reward_funcs=[short],
                 eval_dataset=_jsonl(tmp_path / "eval.jsonl", [{"prompt": "1+1="}, {"prompt": "2+2="}]))
    summary = rewardlab.train("grpo", cfg)
    assert summary["eval_accuracy"] is None and summary["eval_verifier"] is None  # nothing says what correct means
    assert set(summary["eval_rewards"]) == {"short"}
    rows_ = [json.loads(line) for line in open(tmp_path / "custom" / "eval_samples.jsonl")]
    assert all("short" in row["rewards"] for row in rows_)


def test_a_dataset_without_eval_dataset_is_not_evaluated_on_the_built_in_task(tmp_path):
    rows = [{"prompt": f"{a}*2=", "answer": str(2 * a)} for a in range(8)]
    cfg = load_config("grpo", overrides={"dataset": _jsonl(tmp_path / "train.jsonl", rows)})
    assert eval_source(cfg) == ""
    assert eval_source(load_config("grpo")) == "task arithmetic (test split)"
    summary = rewardlab.train("grpo", _small(tmp_path, run_name="no_eval", dataset=cfg.dataset))
    assert summary["eval_accuracy"] is None and summary["eval_data"].startswith("none")
    assert not (tmp_path / "no_eval" / "eval_samples.jsonl").read_text()


def test_trls_accuracy_reward_on_a_users_solution_column_is_reported_before_and_after(tmp_path):
    """TRL's own accuracy_reward (math-verify against the `solution` column, chat completions) as the reward on
    the user's data: the summary reports its held-out mean before and after training, from the user's eval rows."""
    trl_rewards = pytest.importorskip("trl.rewards")
    rows = [{"prompt": [{"role": "user", "content": f"{a}+{a}="}], "solution": str(2 * a)} for a in range(1, 9)]
    summary = rewardlab.train("grpo", _small(tmp_path, run_name="trl_accuracy", reward_funcs=[trl_rewards.accuracy_reward],
                                             dataset=_jsonl(tmp_path / "train.jsonl", rows),
                                             eval_dataset=_jsonl(tmp_path / "eval.jsonl", rows[:4])))
    assert set(summary["eval_rewards_before"]) == set(summary["eval_rewards"]) == {"accuracy_reward"}
    assert all(0.0 <= summary[key]["accuracy_reward"] <= 1.0 for key in ("eval_rewards_before", "eval_rewards"))
    evaluated = [json.loads(line)["prompt"] for line in open(tmp_path / "trl_accuracy" / "eval_samples.jsonl")]
    assert evaluated == [r["prompt"] for r in rows[:4]]


def test_sft_and_distill_given_a_dataset_without_eval_dataset_are_not_evaluated_on_the_built_in_task(tmp_path):
    """As in the online loop: the built-in task is held out only when the user gave no data; the summary says so."""
    rows = [{"prompt": f"{a}+{a}=", "completion": str(2 * a)} for a in range(1, 9)]
    data = _jsonl(tmp_path / "train.jsonl", rows)
    small = {"model_config": TINY, "output_dir": str(tmp_path), "max_steps": 2, "batch_size": 4, "tensorboard": False,
             "torch_threads": 1, "dataset": data}
    sft = rewardlab.train("sft", {**small, "run_name": "sft"})
    assert sft["eval_accuracy"] is None and sft["eval_data"].startswith("none: a dataset without eval_dataset")
    assert (tmp_path / "sft" / "eval_samples.jsonl").read_text() == ""
    distill = rewardlab.train("distill", {**small, "run_name": "distill", "teacher": str(tmp_path / "sft" / "final"),
                                          "max_completion_length": 4})
    assert distill["eval_accuracy"] is None and distill["teacher_accuracy"] is None
    assert distill["eval_data"].startswith("none:")
    held_out = _jsonl(tmp_path / "eval.jsonl", [{**r, "solution": r["completion"]} for r in rows[:4]])
    with_eval = rewardlab.train("sft", {**small, "run_name": "sft_eval", "eval_dataset": held_out, "eval_n": 4})
    assert with_eval["eval_accuracy"] is not None and with_eval["eval_data"] == f"eval_dataset {held_out}"
