"""Rejection-sampling fine-tuning (train rs) and best-of-n: the selection rule and the best-of-n formula by hand,
RAFT raising the share of kept behaviour, and a resumed run training on the round's saved set."""

import itertools
import json
import shutil

import pytest
import torch

from rewardlab.config import ConfigError, load_config
from rewardlab.rollout import SamplingParams
from rewardlab.trainers import train_rs
from rewardlab.trainers.evaluate import best_of_n_curve
from rewardlab.trainers.rejection import keep_best, sample_scored

SMALL = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 2}


def test_keep_best_by_hand():
    nan = float("nan")
    # highest first, a repeated text once, nothing below min_reward, NaN never
    assert keep_best([1.0, 0.0, 1.0, 1.0, nan], ["a", "b", "a", "c", "d"], 2, 1.0) == [0, 3]
    assert keep_best([1.0, 0.0, 1.0, 1.0, nan], ["a", "b", "a", "c", "d"], 3, 1.0) == [0, 3]
    assert keep_best([0.0, 0.0], ["a", "b"], 1, 1.0) == []  # the prompt is dropped
    # a reward model's scores: the top k, ties in sampling order
    assert keep_best([0.3, 0.9, -1.0, 0.9], ["w", "x", "y", "z"], 2, -1e9) == [1, 3]
    assert keep_best([0.3, 0.9, -1.0, 0.9], ["w", "x", "y", "z"], 1, 0.5) == [1]


def test_best_of_n_by_hand():
    correct = torch.tensor([[1, 0, 0, 1]])
    scores = torch.tensor([[0.9, 0.8, 0.1, 0.5]])
    by_verifier = best_of_n_curve(correct, None, [1, 2, 4])
    assert by_verifier[1] == pytest.approx(0.5)
    assert by_verifier[2] == pytest.approx(1 - 1 / 6)  # 1 - C(2,2)/C(4,2)
    assert by_verifier[4] == pytest.approx(1.0)
    by_model = best_of_n_curve(correct, scores, [1, 2, 3, 4])
    # ranks by score: sample 0 (correct), 1 (wrong), 3 (correct), 2 (wrong); rank i wins a 2-subset with
    # probability C(3 - i, 1) / C(4, 2) = 3/6, 2/6, 1/6, 0
    assert by_model[1] == pytest.approx(0.5)
    assert by_model[2] == pytest.approx(3 / 6 + 1 / 6)
    assert by_model[3] == pytest.approx(3 / 4)  # rank 0 (correct) is in 3 of the 4 three-subsets, rank 1 (wrong) wins the 4th
    assert by_model[4] == pytest.approx(1.0)


def test_best_of_n_equals_the_mean_over_every_subset():
    gen = torch.Generator().manual_seed(3)
    correct = torch.rand(5, 6, generator=gen) < 0.4
    scores = torch.randint(0, 4, (5, 6), generator=gen).float()  # ties: the earlier sample wins
    for n in range(1, 7):
        subsets = list(itertools.combinations(range(6), n))
        pick = [[max(s, key=lambda i: (scores[p, i].item(), -i)) for s in subsets] for p in range(5)]
        brute_model = sum(correct[p, i].item() for p in range(5) for i in pick[p]) / (5 * len(subsets))
        brute_oracle = sum(any(correct[p, i] for i in s) for p in range(5) for s in subsets) / (5 * len(subsets))
        assert best_of_n_curve(correct, scores, [n])[n] == pytest.approx(brute_model)
        assert best_of_n_curve(correct, None, [n])[n] == pytest.approx(brute_oracle)
    with pytest.raises(ValueError, match="1 <= n <= 6"):
        best_of_n_curve(correct, None, [7])


def rs_config(tmp_path, name, **extra):
    return load_config("rs", None, {
        "model_config": SMALL, "output_dir": str(tmp_path), "run_name": name, "max_steps": 16, "num_rounds": 2,
        "prompts_per_round": 48, "num_generations": 8, "batch_size": 16, "learning_rate": 1e-2, "max_new_tokens": 4,
        "eval_n": 8, "tensorboard": False, "torch_threads": 1, "reward_funcs": ["tests.reward_fixtures:starts_with_digit"],
        **extra})


def digit_start_share(model_dir, cfg, seed):
    from rewardlab.models import load_policy
    from rewardlab.trainers.inputs import train_records

    model, tok = load_policy(str(model_dir), device="cpu")
    torch.manual_seed(seed)
    records = train_records(cfg, 64)
    samples = sample_scored(model, tok, records, 8, SamplingParams(4, 1.0))
    return sum(t[:1].isdigit() for t in samples.texts) / len(samples.texts)


def test_rs_keeps_only_rewarded_completions_and_learns_them(tmp_path):
    cfg = rs_config(tmp_path, "rs")
    summary = train_rs(cfg)
    rounds = [json.loads(line) for path in sorted((tmp_path / "rs" / "rounds").glob("round-*.jsonl")) for line in open(path)]
    assert rounds and all(row["completion"][:1].isdigit() and row["reward"] == 1.0 for row in rounds)
    assert summary["samples_drawn"] == 2 * 48 * 8
    from rewardlab.models import load_policy

    init_dir = tmp_path / "init_model"
    model, tok = load_policy("tiny", device="cpu", seed=0, model_config=SMALL)
    model.save_pretrained(init_dir)
    tok.save_pretrained(init_dir)
    before = digit_start_share(init_dir, cfg, 1)
    after = digit_start_share(tmp_path / "rs" / "final", cfg, 1)
    assert before < 0.2 and after > before + 0.2, (before, after)  # seeds 0-2: 0.08 -> 0.37 to 0.48


def test_rs_resume_trains_on_the_saved_round(tmp_path):
    full = rs_config(tmp_path, "full", save_steps=3)
    train_rs(full)
    # the same run cut back to its step-12 checkpoint (round 1 started at step 8 and its set is on disk)
    shutil.copytree(tmp_path / "full", tmp_path / "cut")
    shutil.rmtree(tmp_path / "cut" / "final")
    shutil.rmtree(tmp_path / "cut" / "checkpoint-15")
    assert (tmp_path / "cut" / "checkpoint-12").is_dir() and (tmp_path / "cut" / "rounds" / "round-1.jsonl").is_file()
    for extra in ("summary.json", "eval_samples.jsonl"):
        (tmp_path / "cut" / extra).unlink()
    train_rs(rs_config(tmp_path, "cut", save_steps=3, resume=True))
    rows = {r["step"]: r for r in map(json.loads, open(tmp_path / "full" / "metrics.jsonl")) if "loss" in r}
    resumed = {r["step"]: r for r in map(json.loads, open(tmp_path / "cut" / "metrics.jsonl")) if "loss" in r}
    assert sorted(resumed) == list(range(1, 17))
    for step in range(13, 17):
        assert resumed[step]["loss"] == pytest.approx(rows[step]["loss"], abs=1e-6), step


def test_rs_config_errors():
    with pytest.raises(ConfigError, match="keep_top_k"):
        load_config("rs", None, {"keep_top_k": 9, "num_generations": 8})
    with pytest.raises(ConfigError, match="num_rounds"):
        load_config("rs", None, {"num_rounds": 5, "max_steps": 4})
    with pytest.raises(ConfigError, match="reward_weights"):
        load_config("rs", None, {"reward_weights": [1.0, 2.0]})


def test_eval_best_of_n_by_verifier_and_reward_model(tmp_path, capsys):
    import rewardlab
    from rewardlab.cli import main

    common = {"model_config": SMALL, "output_dir": str(tmp_path), "max_steps": 2, "batch_size": 4, "eval_n": 4,
              "tensorboard": False, "torch_threads": 1}
    rewardlab.train("sft", {**common, "run_name": "policy"})
    rewardlab.train("rm", {**common, "run_name": "rm"})
    out = tmp_path / "bo.json"
    assert main(["eval", "--model", str(tmp_path / "policy" / "final"), "--best-of", "6", "--n", "8", "--device", "cpu",
                 "--max-new-tokens", "4", "--reward-model", str(tmp_path / "rm" / "final"), "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    by_verifier = {int(k): v for k, v in result["by_verifier"].items()}
    by_model = {int(k): v for k, v in result["by_reward_model"].items()}
    assert sorted(by_verifier) == sorted(by_model) == [1, 2, 4, 6]
    assert by_verifier[1] == pytest.approx(by_model[1])  # one sample: nothing to pick from
    assert all(by_verifier[a] <= by_verifier[b] + 1e-12 for a, b in [(1, 2), (2, 4), (4, 6)])  # pass@n never falls
    assert all(by_model[n] <= by_verifier[n] + 1e-12 for n in by_model)  # no picker beats the oracle
    assert "by verifier (pass@n)" in capsys.readouterr().out


def test_verified_pairs_pair_a_right_with_a_wrong_sample():
    from rewardlab.trainers.rejection import Samples, verified_pairs

    texts = ["42", "32", "42", "52", "7", "7"]
    samples = Samples(3, [[1], [2]], [[0]] * 6, texts, torch.zeros(6), [True, False, True, False, True, True])
    records = [{"prompt": "17+25=", "answer": "42"}, {"prompt": "3+4=", "answer": "7"}]
    # groups of 3: ["42" right, "32" wrong, "42" right] and ["52" wrong, "7" right, "7" right]
    assert verified_pairs(samples, records) == [{"prompt": "17+25=", "chosen": "42", "rejected": "32", "answer": "42"},
                                                {"prompt": "3+4=", "chosen": "7", "rejected": "52", "answer": "7"}]
    assert len(verified_pairs(samples, records, per_prompt=2)) == 2  # one distinct right answer per prompt: one pair each
    all_right = Samples(3, [[1]], [[0]] * 3, ["7", "7", "7"], torch.zeros(3), [True] * 3)
    assert verified_pairs(all_right, records[1:]) == []
    empty_wrong = Samples(3, [[1]], [[0]] * 3, ["", "7", "8"], torch.zeros(3), [False, True, False])
    assert verified_pairs(empty_wrong, records[1:]) == [{"prompt": "3+4=", "chosen": "7", "rejected": "8", "answer": "7"}]
    with pytest.raises(ValueError, match="judged by a verifier"):
        verified_pairs(Samples(3, [[1]], [[0]] * 3, texts[:3], torch.zeros(3), None), records[:1])
