"""The `code` task: splits by the function (not its writing), hidden tests, reward = fraction passed.

The canonical form used here is computed independently of the library: each record's reference answer is
evaluated with Python on every input from -12 to 12, so a library that split by the expression text, the
prompt or the family would fail the split tests.
"""

from __future__ import annotations

import functools
import json
import logging
import re

import pytest

from rewardlab.tasks import TASKS, make_task
from rewardlab.tasks.code import SHOWN_INPUTS, all_functions, hidden_inputs, make_code_task_reward, program_of
from rewardlab.tasks.splits import split_of
from rewardlab.trainers.inputs import eval_records, reward_functions, verifier

INPUTS = range(-12, 13)


@functools.cache
def values_key(expression: str) -> tuple:
    """The function an expression computes, as its values on every input the task may use."""
    return tuple(eval(expression, {"max": max, "min": min, "abs": abs}, {"x": x}) for x in INPUTS)  # our own expressions


@pytest.fixture(scope="module")
def task():
    return make_task("code")


@pytest.fixture(scope="module")
def reward():
    return make_code_task_reward()


def test_registered_and_routed_to_the_sandboxed_reward():
    from rewardlab.config import load_config

    assert TASKS["code"].name == "code"
    cfg = load_config("grpo", None, {"task": "code", "eval_n": 5})
    records = eval_records(cfg)
    assert len(records) == 5 and all("tests" in r for r in records)
    answers = [r["answer"] for r in records]
    assert verifier(cfg)(completions=answers, tests=[r["tests"] for r in records]) == [1.0] * 5
    total, _ = reward_functions(cfg)(prompts=[r["prompt"] for r in records], completions=["x"] * 5,
                                     completion_ids=[[]] * 5, columns={"tests": [r["tests"] for r in records]})
    assert total.shape == (5,)


def test_no_tune_or_test_function_is_trained_on_in_any_writing(task):
    train = {values_key(r["answer"]) for r in task.generate(3000, seed=0)}
    tune = [values_key(r["answer"]) for seed in (0, 7) for r in task.generate(100, seed=seed, split="tune")]
    test = [values_key(r["answer"]) for seed in (0, 7) for r in task.generate(100, seed=seed, split="test")]
    assert tune and test and train
    assert not train & set(tune) and not train & set(test) and not set(tune) & set(test)
    # the canonical form is the function's values, whatever its writing: "x%1+3" and "3" are one problem
    for r in task.generate(50, seed=1, split="test"):
        assert task.canonical(r) == ",".join(map(str, values_key(r["answer"])))
    assert values_key("x%1+3") == values_key("3")
    three = next(f for f in all_functions() if f.key == ",".join(map(str, values_key("x%1+3"))))
    assert three.expression == "3"


def test_splits_cover_all_functions_once_and_follow_the_fractions(task):
    sizes = {s: len(task.split_problems(s)) for s in ("train", "tune", "test")}
    assert sum(sizes.values()) == len(all_functions()) == len({values_key(f.expression) for f in all_functions()})
    # the split is a hash of the values (so any writing of a function lands in its split), not of the text
    for fn in all_functions():
        assert task.split_of(fn) == split_of(",".join(map(str, values_key(fn.expression))), 0.1, 0.2)
    assert abs(sizes["test"] / sum(sizes.values()) - 0.2) < 0.04 and abs(sizes["tune"] / sum(sizes.values()) - 0.1) < 0.04


def test_examples_determine_the_function():
    """No two functions show the same examples, else a prompt could have two right answers in two splits."""
    shown = {}
    for fn in all_functions():
        seen = tuple(fn(x) for x in SHOWN_INPUTS)
        assert seen not in shown, (fn.expression, shown.get(seen))
        shown[seen] = fn.expression


def test_hidden_tests_are_not_in_the_prompt(task):
    for style in ("compact", "verbose"):
        records = make_task("code", style=style).generate(150, seed=1, split="test") + make_task("code", style=style).generate(150, seed=1)
        for r in records:
            shown = {int(x) for x in re.findall(r"f\((-?\d+)\)", r["prompt"])}
            assert shown == set(SHOWN_INPUTS)
            calls = [int(call[2:-1]) for call, _ in r["tests"]]
            assert len(calls) == 8 and not shown & set(calls)
            assert min(calls) < min(SHOWN_INPUTS) and max(calls) > max(SHOWN_INPUTS)  # both sides of the examples
            values = values_key(r["answer"])
            for call, expected in r["tests"]:
                assert f"{call}={expected}" not in r["prompt"].replace(" ", "")
                assert expected == values[int(call[2:-1]) + 12]
            if not r["answer"].lstrip("-").isdigit() and len(r["answer"]) > 2:  # not a constant, nor "x" or "-x"
                assert r["answer"] not in r["prompt"]


def test_demonstrations_and_answers_score_one(task, reward):
    records = task.generate(12, seed=2, split="tune") + task.generate(12, seed=2)
    assert reward([r["completion"] for r in records], [r["tests"] for r in records]) == [1.0] * len(records)
    assert len({r["family"] for r in records}) >= 3


def test_reward_is_the_fraction_of_hidden_tests_passed(reward):
    fn = next(f for f in all_functions() if f.expression == "abs(x-1)+3")
    tests = [[f"f({x})", fn(x)] for x in hidden_inputs(fn, 8)]
    below = sum(int(call[2:-1]) < 1 for call, _ in tests) / len(tests)
    # "x+2" is right above the kink only, "-x+4" below it only, "x" nowhere; a typo does not parse
    scores = reward(["x+2", "-x+4", "x", "abs(x-1)+3", "abs(x-1", "```python\ndef f(x):\n    return abs(x - 1) + 3\n```"],
                    [tests] * 6)
    assert scores == [1 - below, below, 0.0, 1.0, 0.0, 1.0]
    assert 0 < scores[0] < 1 and 0 < scores[1] < 1
    assert reward(["x"], [None]) == [None]  # no tests: does not apply


def test_reward_runs_each_distinct_program_once_and_never_sees_expected_values(reward, monkeypatch):
    import rewardlab.rewards.code as sandbox

    seen = []
    real = sandbox.run_batch

    def spy(codes, tests, **kwargs):
        seen.append((list(codes), json.dumps(list(tests))))
        return real(codes, tests, **kwargs)

    monkeypatch.setattr(sandbox, "run_batch", spy)
    fresh = make_code_task_reward()
    tests = [["f(-5)", -123456], ["f(7)", 654321]]
    assert fresh(["x*0-123456", "x*0-123456", "nonsense(", "x*0-123456"], [tests] * 4) == [0.5, 0.5, 0.0, 0.5]
    assert len(seen) == 1 and seen[0][0] == ["def f(x):\n    return (x*0-123456)\n"]  # one run; the typo never ran
    assert fresh(["x*0-123456"], [tests]) == [0.5] and len(seen[-1][0]) == 0  # remembered


def test_program_of_reads_what_models_write():
    assert program_of("3*x+1") == "def f(x):\n    return (3*x+1)\n"
    assert program_of("f(x) = x % 3\nbecause the values repeat") == "def f(x):\n    return (x % 3)\n"
    assert program_of("lambda x: x + 1") == "f = lambda x: x + 1\n"
    assert program_of("def f(x):\n    return x\n").startswith("def f(x):")


def test_eval_sets_hold_distinct_functions(task, caplog):
    for split in ("tune", "test"):
        rows = task.generate(120, seed=3, split=split)
        assert len({values_key(r["answer"]) for r in rows}) == 120
        assert {task.split_of(next(f for f in all_functions() if f.key == r["function"])) for r in rows} == {split}
    size = len(task.split_problems("tune"))
    with caplog.at_level(logging.WARNING, logger="rewardlab.tasks.splits"):
        rows = task.generate(size + 50, seed=0, split="tune")
    assert len(rows) == size == len({values_key(r["answer"]) for r in rows})
    assert f"holds only {size} distinct problems" in caplog.text


def test_sloppy_demonstrations_are_near_misses(reward):
    records = make_task("code", sloppy_rate=1.0).generate(12, seed=0)
    sloppy = [r for r in records if r["completion"] != r["answer"]]
    assert len(sloppy) == 12
    assert all(s < 1.0 for s in reward([r["completion"] for r in sloppy], [r["tests"] for r in sloppy]))


def test_prompts_fit_the_tiny_model_and_options_are_checked():
    records = make_task("code").generate(500, seed=0)
    assert max(len(r["prompt"]) + len(r["completion"]) for r in records) < 80
    assert "Python expression" in make_task("code", style="verbose").generate(1, seed=0)[0]["prompt"]
    chat = make_task("code", chat=True).generate(1, seed=0)[0]["prompt"]
    assert chat[0]["role"] == "user"
    for bad in ({"families": ["trig"]}, {"style": "poem"}, {"n_tests": 1}, {"sloppy_rate": 2}):
        with pytest.raises(ValueError):
            make_task("code", **bad)
