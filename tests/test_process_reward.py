"""Process reward models (docs/algorithms.md#process-reward-models): the chain task's step labels, step
encoding and aggregation by hand, a PRM learning a step rule, a stock transformers load agreeing with
rewardlab's scores, and PRM rewards in the online loop."""

import json

import pytest
import torch

import rewardlab
from rewardlab.config import ConfigError, load_config
from rewardlab.data import DataError
from rewardlab.models import build_char_tokenizer
from rewardlab.tasks import chain_reward, make_task
from rewardlab.tasks.chain import running_sums, step_labels
from rewardlab.trainers.process_reward import (
    ProcessRewardFunction,
    aggregate,
    encode_steps,
    validate_stepwise,
)

SMALL = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 2}
BASE = {"model_config": SMALL, "tensorboard": False, "torch_threads": 1}


def test_chain_steps_by_hand():
    assert running_sums([7, 5, 9, 3]) == [12, 21, 24]
    assert step_labels([7, 5, 9, 3], ["12", "21", "24"]) == [True, True, True]
    # one slip: the later steps add correctly from the wrong sum, and are still off the path
    assert step_labels([7, 5, 9, 3], ["12", "22", "25"]) == [True, False, False]
    assert step_labels([7, 5, 9, 3], ["12", "21", "24", "24"]) == [True, True, True, False]  # a step too many
    # the right sum after a wrong one is not a valid step from it (22 + 3 is 25): off the path too
    assert step_labels([7, 5, 9, 3], ["12", "22", "24"]) == [True, False, False]
    assert chain_reward(["12\n21\n24", "12\n22\n25", "24", ""], ["24"] * 4) == [1.0, 0.0, 1.0, 0.0]


def test_chain_splits_keep_reorderings_together():
    task = make_task("chain")
    test = {task.canonical(r) for r in task.generate(600, seed=0, split="test")}
    train = {task.canonical(r) for r in task.generate(4000, seed=0, split="train")}
    assert len(test) == 600 and not test & train
    assert task.canonical({"prompt": "9+1+5="}) == task.canonical({"prompt": "5+9+1="}) == "1+5+9"
    # the sloppy demonstrator: half its chains carry one slip; every demonstration's steps are consistent sums
    demos = task.generate(2000, seed=1, split="train")
    wrong = sum(not all(task.step_labels(r, r["completion"])[1]) for r in demos) / len(demos)
    assert 0.4 < wrong < 0.6


def test_encode_steps_and_aggregate_by_hand():
    tok = build_char_tokenizer()
    ids, positions = encode_steps("3+4+5=", ["7", "12"], tok, "\n")
    # char tokens: 6 for the prompt, then "7\n" and "12\n": the labels sit on each "\n"
    assert positions == [7, 10] and len(ids) == 11
    assert tok.decode([ids[p] for p in positions]) == "\n\n"
    assert aggregate([0.9, 0.2, 0.7], "min") == pytest.approx(0.2)
    assert aggregate([0.9, 0.2, 0.7], "last") == pytest.approx(0.7)
    assert aggregate([0.9, 0.2, 0.7], "mean") == pytest.approx(0.6)
    assert aggregate([], "min") == 0.0
    with pytest.raises(DataError, match="over max_length=8"):
        encode_steps("3+4+5=", ["7", "12"], tok, "\n", max_length=8)


def test_stepwise_rows_are_checked():
    validate_stepwise([{"prompt": "1+2=", "completions": ["3"], "labels": [True]}], "x")
    with pytest.raises(DataError, match="row 0: labels must be a list of 2 bools"):
        validate_stepwise([{"prompt": "1+2+3=", "completions": ["3", "6"], "labels": [True]}], "x")
    with pytest.raises(DataError, match="needs prompt, completions"):
        validate_stepwise([{"prompt": "1+2=", "completion": "3"}], "x")
    with pytest.raises(ConfigError, match="has no step verifier"):
        rewardlab.train("prm", {**BASE, "task": "arithmetic", "max_steps": 1})


def rule_rows(n, seed):
    """A learnable step rule: a step is wrong when it holds the digit 7."""
    gen = torch.Generator().manual_seed(seed)
    rows = []
    for _ in range(n):
        steps = [str(int(x)) for x in torch.randint(0, 100, (3,), generator=gen)]
        rows.append({"prompt": "go:", "completions": steps, "labels": ["7" not in s for s in steps]})
    return rows


@pytest.fixture(scope="module")
def rule_prm(tmp_path_factory):
    out = tmp_path_factory.mktemp("prm")
    for name, seed in (("train", 0), ("test", 1)):
        with open(out / f"{name}.jsonl", "w") as fh:
            for row in rule_rows(400, seed):
                fh.write(json.dumps(row) + "\n")
    summary = rewardlab.train("prm", {**BASE, "dataset": str(out / "train.jsonl"), "eval_dataset": str(out / "test.jsonl"),
                                      "output_dir": str(out), "run_name": "prm", "max_steps": 120, "batch_size": 16,
                                      "learning_rate": 3e-3})
    return out / "prm" / "final", summary


def test_prm_learns_the_step_rule(rule_prm):
    _, summary = rule_prm
    # held out: about a quarter of the steps hold a 7; a head that says "right" everywhere scores 0 on them
    assert summary["eval"]["wrong_step_accuracy"] > 0.8 and summary["eval"]["right_step_accuracy"] > 0.8, summary["eval"]
    assert summary["eval"]["step_accuracy"] > summary["eval_before"]["step_accuracy"] + 0.1


def test_saved_prm_loads_in_stock_transformers_and_scores_alike(rule_prm):
    from transformers import AutoModelForTokenClassification

    path, _ = rule_prm
    stock = AutoModelForTokenClassification.from_pretrained(path, local_files_only=True).eval()
    reward = ProcessRewardFunction(str(path), "min")
    prompts, completions = ["go:", "go:"], ["12\n77\n5", "40\n3"]
    ours = reward.step_scores(prompts, completions)
    for prompt, text, scores in zip(prompts, completions, ours):
        ids, positions = encode_steps(prompt, text.split("\n"), reward.tokenizer, "\n")
        with torch.no_grad():
            probs = stock(torch.tensor([ids])).logits.softmax(-1)[0, :, 1]
        assert [float(probs[p]) for p in positions] == pytest.approx(scores, abs=1e-5)
    assert ours[0][1] < 0.5 < ours[0][0]  # "77" is wrong by the rule, "12" right
    assert reward(prompts, completions) == pytest.approx([min(s) for s in ours])


def test_grpo_trains_on_prm_rewards(tmp_path, rule_prm):
    path, _ = rule_prm
    summary = rewardlab.train("grpo", {**BASE, "output_dir": str(tmp_path), "run_name": "g", "max_steps": 2, "batch_size": 8,
                                       "num_generations": 4, "max_completion_length": 4, "eval_n": 4,
                                       "process_reward_model": str(path), "prm_aggregation": "mean"})
    rows = [json.loads(line) for line in open(tmp_path / "g" / "metrics.jsonl") if '"reward"' in line]
    assert rows and all("rewards/process_reward_model/mean" in r for r in rows)
    assert all(0.0 <= r["rewards/process_reward_model/mean"] <= 1.0 for r in rows)
    assert summary["steps"] == 2
    with pytest.raises(ConfigError, match="prm_aggregation"):
        load_config("grpo", None, {"prm_aggregation": "max"})
