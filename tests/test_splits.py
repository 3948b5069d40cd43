"""Train / tune / test splits: held-out problems (in any order of presentation) are never trained on, tune
and test never share a problem, and an evaluation set holds distinct problems.

Canonical forms come from benchmarks/heldout_audit.py, written independently of the library, so a library that splits by the
ordered string (or by the raw prompt) fails these tests.
"""

import importlib.util
import itertools
import logging
from pathlib import Path

import pytest

from rewardlab.config import ConfigError, load_config
from rewardlab.tasks import make_task
from rewardlab.tasks.splits import draw_distinct, sample_without_replacement

DEMO = {"max_digits": 2, "sloppy_carry_rate": 0.7, "reverse_answer": True}


# the audit script's canonical forms, written from the prompt text without the library's split code
_spec = importlib.util.spec_from_file_location("heldout_audit", Path(__file__).resolve().parents[1] / "benchmarks" / "heldout_audit.py")
_audit = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_audit)
arithmetic_key, preference_key, countdown_key = _audit.arithmetic_key, _audit.preference_key, _audit.countdown_key


# name, options, key, training rows drawn, eval rows
CASES = {
    "arithmetic-demo": ("arithmetic", DEMO, arithmetic_key, 6000, 400),
    "arithmetic-3digit": ("arithmetic", {"max_digits": 3, "ops": ["+", "-", "*"]}, arithmetic_key, 6000, 400),
    "countdown": ("countdown", {"sloppy_rate": 0.3}, countdown_key, 3000, 150),
    "preference": ("preference", {}, preference_key, 6000, 300),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_no_tune_or_test_problem_is_trained_on_in_any_order(case):
    name, options, key, n_train, n_eval = CASES[case]
    task = make_task(name, **options)
    train = {key(r) for r in task.generate(n_train, seed=0)}
    tune = [key(r) for seed in (0, 7) for r in task.generate(n_eval, seed=seed, split="tune")]
    test = [key(r) for seed in (0, 7) for r in task.generate(n_eval, seed=seed, split="test")]
    assert tune and test
    assert sum(k in train for k in tune) == 0
    assert sum(k in train for k in test) == 0
    assert not set(tune) & set(test)  # tune and test never share a problem


@pytest.mark.parametrize("case", sorted(CASES))
def test_eval_sets_hold_distinct_problems(case):
    name, options, key, _, n_eval = CASES[case]
    task = make_task(name, **options)
    for split in ("tune", "test"):
        rows = task.generate(n_eval, seed=3, split=split)
        assert len(rows) == n_eval
        assert len({key(r) for r in rows}) == n_eval, split


def test_arithmetic_commutative_twins_share_a_split_and_differences_do_not_merge():
    task = make_task("arithmetic", **DEMO)
    splits = {task.split_of(a, "+", b) for a in range(100) for b in range(100)}
    assert splits == {"train", "tune", "test"}
    for a, b in itertools.product(range(0, 100, 3), range(0, 100, 7)):
        assert task.split_of(a, "+", b) == task.split_of(b, "+", a)
        assert task.split_of(a, "*", b) == task.split_of(b, "*", a)
    assert task.canonical({"prompt": "25+17="}) == task.canonical({"prompt": "17+25="}) == "17+25"
    assert task.canonical({"prompt": "25-17="}) != task.canonical({"prompt": "17-25="})
    # "a-b" and "b-a" are two problems: some pairs land in different splits
    assert any(task.split_of(a, "-", b) != task.split_of(b, "-", a) for a in range(30) for b in range(30))


def test_arithmetic_split_shares_follow_the_fractions():
    task = make_task("arithmetic", max_digits=2)
    sizes = {split: len(task.split_problems(split)) for split in ("train", "tune", "test")}
    total = sum(sizes.values())
    assert total == 100 * 101 // 2  # every unordered pair of 0..99 once
    assert abs(sizes["test"] / total - 0.2) < 0.03 and abs(sizes["tune"] / total - 0.1) < 0.03


def test_preference_reordered_prompts_are_one_problem_in_one_split():
    task = make_task("preference")
    for letters in ("qdk", "abz", "mxe", "tuv"):
        orders = {"".join(p) for p in itertools.permutations(letters)}
        assert len({task.split_of(o) for o in orders}) == 1
        assert len({task.canonical({"prompt": f"{o}:"}) for o in orders}) == 1
    pairs = task.preference_pairs(300, seed=0, split="test")
    assert len({preference_key(p) for p in pairs}) == 300
    train = {preference_key(p) for p in task.preference_pairs(3000, seed=0)}
    assert not train & {preference_key(p) for p in pairs}


def test_countdown_key_is_the_sorted_numbers_and_target():
    task = make_task("countdown")
    assert task.split_of([7, 3, 5], 22) == task.split_of([3, 5, 7], 22)
    rows = task.generate(50, seed=0, split="test")
    assert all(r["numbers"] == sorted(r["numbers"]) and task.split_of(r["numbers"], r["target"]) == "test" for r in rows)


def test_a_split_smaller_than_asked_gives_all_its_problems_and_warns(caplog):
    task = make_task("countdown")
    size = len(task.split_problems("test"))
    with caplog.at_level(logging.WARNING, logger="rewardlab.tasks.splits"):
        rows = task.generate(size + 200, seed=0, split="test")
    assert len(rows) == size == len({countdown_key(r) for r in rows})
    assert f"holds only {size} distinct problems" in caplog.text


def test_sampling_helpers_never_repeat_a_key():
    import random

    pool = [(k, 1.0 + k % 7) for k in range(50)]
    assert sorted(sample_without_replacement(pool, 50, random.Random(0), "pool")) == list(range(50))
    rng = random.Random(0)
    drawn = draw_distinct(lambda: (k := rng.randrange(40), k), 40, "a 40-key draw")
    assert sorted(drawn) == list(range(40))
    with pytest.raises(ValueError, match="found only 40 distinct problems"):
        draw_distinct(lambda: (k := rng.randrange(40), k), 41, "a 40-key draw", patience=2000)


def test_unlisted_splits_are_deduplicated_by_rejection():
    task = make_task("arithmetic", max_digits=3, ops=["+", "-", "*"])
    assert task.split_problems("test") is None  # too many problems to list
    rows = task.generate(3000, seed=1, split="test")
    assert len({arithmetic_key(r) for r in rows}) == 3000
    wide = make_task("preference", num_letters=10, max_extra=2)
    rows = wide.generate(400, seed=1, split="tune")
    assert len({preference_key(r) for r in rows}) == 400


def test_split_names_and_fractions_are_checked():
    task = make_task("arithmetic")
    for name in ("train", "tune", "test"):
        assert len(task.generate(3, seed=0, split=name)) == 3
    with pytest.raises(ValueError, match="'train', 'tune' or 'test'"):
        task.generate(3, seed=0, split="valid")
    with pytest.raises(ValueError, match="heldout_fraction"):
        make_task("preference", heldout_fraction=0.6, tune_fraction=0.5)


def test_eval_records_follow_eval_split():
    from rewardlab.trainers.inputs import eval_records

    cfg = load_config("sft", None, {"task_options": DEMO, "eval_n": 50})
    task = make_task("arithmetic", **DEMO)
    assert cfg.eval_split == "test"
    assert {task.split_of(*_parse(r)) for r in eval_records(cfg)} == {"test"}
    tune_cfg = load_config("sft", None, {"task_options": DEMO, "eval_n": 50, "eval_split": "tune"})
    assert {task.split_of(*_parse(r)) for r in eval_records(tune_cfg)} == {"tune"}
    with pytest.raises(ConfigError, match="eval_split"):
        eval_records(load_config("sft", None, {"eval_split": "train"}))


def _parse(record):
    from rewardlab.tasks.arithmetic import parse_problem

    return parse_problem(record["prompt"])


def test_env_tune_and_test_episode_seeds_are_disjoint_and_below_training():
    from rewardlab.envs.evaluate import TRAIN_SEED_BASE, eval_seeds

    test = set(eval_seeds(9999, 1000)) | set(eval_seeds(0, 1000))
    tune = set(eval_seeds(9999, 1000, "tune")) | set(eval_seeds(0, 1000, "tune"))
    assert len(test) == len(tune) == 2000 and not test & tune
    assert max(test | tune) < TRAIN_SEED_BASE
    assert eval_seeds(3, 2) == [300_000, 300_001]  # the test seeds of earlier evaluations are unchanged


def test_env_eval_with_a_large_seed_is_a_clear_error_before_anything_runs(capsys):
    from rewardlab.cli import main

    assert main(["eval", "--env", "bandit", "--seed", "424242", "--n", "5", "--baselines", "random"]) == 2
    err = capsys.readouterr().err
    assert "evaluation seed must be in [0, 10000), got 424242" in err and "Traceback" not in err


class _Stop(Exception):
    """Raised by a spy once a trainer has read its held-out data, before it builds a model."""


@pytest.mark.parametrize("method, module, train", [("dpo", "rewardlab.trainers.preference", "train_dpo"),
                                                   ("rm", "rewardlab.trainers.reward_model", "train_reward_model")])
@pytest.mark.parametrize("split", ["tune", "test"])
def test_preference_trainers_evaluate_on_eval_split(monkeypatch, tmp_path, method, module, train, split):
    import importlib

    from rewardlab.tasks.preference import prompt_letters

    trainer = importlib.import_module(module)
    held_out = []
    real = trainer.preference_records

    def spy(cfg, n, unpaired=False, split="train"):
        records = real(cfg, n, unpaired, split)
        if split != "train":
            held_out.extend(records)
        return records

    def stop(*args, **kwargs):
        raise _Stop

    monkeypatch.setattr(trainer, "preference_records", spy)
    monkeypatch.setattr(trainer, "start_run", stop)
    generated = []
    task_class = type(make_task("preference"))
    real_generate = task_class.generate
    monkeypatch.setattr(task_class, "generate", lambda self, n, seed, split="train": generated.extend(
        real_generate(self, n, seed, split)) or generated)
    cfg = load_config(method, None, {"task": "preference", "eval_split": split, "eval_n": 60, "max_steps": 1,
                                     "output_dir": str(tmp_path)})
    with pytest.raises(_Stop):
        getattr(trainer, train)(cfg)
    task = make_task("preference")
    assert len(held_out) == 60
    assert {task.split_of(prompt_letters(r["prompt"])) for r in held_out} == {split}
    if method == "dpo":  # the gold win rate's prompts too
        assert len(generated) == 60 and {task.split_of(prompt_letters(r["prompt"])) for r in generated} == {split}


def test_env_demonstrations_of_each_split_play_their_own_episodes(monkeypatch):
    from rewardlab.trainers import env_rollouts
    from rewardlab.trainers.inputs import eval_records

    seeds = {}
    real = env_rollouts.run_episodes
    current = []

    def spy(make_env, episode_seeds, agent):
        seeds.setdefault(current[-1], set()).update(episode_seeds)
        return real(make_env, episode_seeds[:20], agent)

    monkeypatch.setattr(env_rollouts, "run_episodes", spy)
    cfg = load_config("sft", None, {"env": "tictactoe", "eval_n": 30})
    for split in ("train", "tune", "test"):
        current.append(split)
        env_rollouts.demonstration_records(cfg, 30, split)
    assert not seeds["train"] & seeds["tune"] and not seeds["train"] & seeds["test"] and not seeds["tune"] & seeds["test"]
    calls = []
    monkeypatch.setattr(env_rollouts, "demonstration_records", lambda cfg, n, split="train": calls.append(split) or [])
    eval_records(load_config("sft", None, {"env": "tictactoe", "eval_split": "tune"}))
    eval_records(load_config("sft", None, {"env": "tictactoe"}))
    assert calls == ["tune", "test"]


@pytest.mark.parametrize("split", ["tune", "test"])
def test_env_evaluation_during_training_uses_eval_split(monkeypatch, split):
    from types import SimpleNamespace

    import torch

    from rewardlab.trainers import env_rollouts

    asked = []

    def fake_evaluate_agent(env, options, agent, episodes, seed, batch_size=500, desc="", split="test"):
        asked.append(split)
        return SimpleNamespace(metrics={"score": 0.0}, rows=[])

    monkeypatch.setattr(env_rollouts, "evaluate_agent", fake_evaluate_agent)
    rollouts = env_rollouts.EnvRollouts.__new__(env_rollouts.EnvRollouts)
    rollouts.cfg = load_config("grpo", None, {"env": "bandit", "eval_split": split})
    rollouts.model, rollouts.tokenizer, rollouts.options = torch.nn.Linear(1, 1), None, {}
    rollouts.agent = SimpleNamespace(engine=None, max_length=None)
    rollouts.evaluate()
    assert asked == [split]
