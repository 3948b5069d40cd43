"""The countdown task: the safe expression parser, the verifier, the generator and diversity metrics."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest

from rewardlab.monitor import answer_entropy, distinct_correct, diversity_metrics, pass_at_k
from rewardlab.tasks import make_task
from rewardlab.tasks.countdown import (
    ExpressionError,
    all_solutions,
    countdown_answer,
    countdown_reward,
    is_solution,
    parse_expression,
)


@pytest.mark.parametrize(
    "text, value",
    [
        ("3*5+7", Fraction(22)),
        ("3+5*7", Fraction(38)),  # precedence: 3 + 35
        ("(3+5)*7", Fraction(56)),
        ("8-2-1", Fraction(5)),  # left-associative: (8-2)-1
        ("8/4/2", Fraction(1)),
        ("7/2", Fraction(7, 2)),  # exact division, no flooring
        (" 12 * ( 3 - 1 ) ", Fraction(24)),
    ],
)
def test_parser_values(text, value):
    assert parse_expression(text)[0] == value


@pytest.mark.parametrize(
    "text",
    ["", "3+", "(3+4", "3+4)", "3**2", "-3+4", "__import__('os')", "3 4", "1/0", "2/(1-1)", "x+1", "1" * 65],
)
def test_parser_rejects_anything_but_arithmetic(text):
    with pytest.raises(ExpressionError):
        parse_expression(text)


def test_verifier_uses_each_number_exactly_once_by_default():
    assert is_solution("3*5+7", [3, 5, 7], 22)
    assert is_solution("7+5*3", [3, 5, 7], 22)
    assert not is_solution("3*5+7", [3, 5, 7], 21)  # wrong value
    assert not is_solution("3*5+7+0", [3, 5, 7], 22)  # a number not given
    assert not is_solution("3*5", [3, 5, 7], 15)  # 7 unused
    assert is_solution("3*5", [3, 5, 7], 15, use_all=False)
    assert not is_solution("3*3+7", [3, 5, 7], 16, use_all=False)  # 3 used twice
    assert is_solution("(8-2)*3/9", [2, 3, 8, 9], 2)  # through a fraction-free path to an integer
    assert is_solution("9/(3/2)", [2, 3, 9], 6)  # 3/2 is kept exact


def test_reward_reads_the_first_line_and_chat_completions():
    assert countdown_answer(" 3 * 5 + 7\nmore text") == "3*5+7"
    rewards = countdown_reward(
        ["3*5+7\n", [{"role": "assistant", "content": "5*3+7"}], "3+5+7", "nonsense"],
        numbers=[[3, 5, 7]] * 4,
        target=[22] * 4,
    )
    assert rewards == [1.0, 1.0, 0.0, 0.0]


def test_enumerated_solutions_are_all_correct_and_complete_for_two_numbers():
    # 2 and 3: + * are commutative (2 texts each), - and / are not
    solutions = all_solutions((2, 3))
    assert solutions[5] == ("2+3", "3+2")
    assert solutions[6] == ("2*3", "3*2")
    assert solutions[1] == ("3-2",) and solutions[-1] == ("2-3",)
    for target, texts in all_solutions((3, 5, 7)).items():
        assert all(is_solution(t, [3, 5, 7], target) for t in texts)
    # the tree evaluator behind the enumeration agrees with the parser on every expression of 4 numbers
    from rewardlab.tasks.countdown import _render, _trees, _value

    for tree in _trees((6, 2, 2, 3)):
        text = _render(tree)[0]
        value = _value(tree)
        if value is None:
            with pytest.raises(ExpressionError):
                parse_expression(text)
        else:
            assert parse_expression(text)[0] == value, text


def test_generator_splits_train_and_heldout_and_respects_its_options():
    task = make_task("countdown", min_solutions=3, max_target=30)
    train, test = task.generate(300, seed=0), task.generate(100, seed=0, split="test")
    assert not {r["prompt"] for r in train} & {r["prompt"] for r in test}
    for record in train + test:
        assert 1 <= record["target"] <= 30 and record["num_solutions"] >= 3
        assert is_solution(record["answer"], record["numbers"], record["target"])
        assert is_solution(record["completion"], record["numbers"], record["target"])  # sloppy_rate 0
        assert record["prompt"] == f"{','.join(map(str, record['numbers']))}={record['target']}:"
    assert task.generate(5, seed=1) == task.generate(5, seed=1)


def test_sloppy_demonstrator_writes_some_wrong_answers():
    records = make_task("countdown", sloppy_rate=0.5).generate(400, seed=0)
    wrong = sum(not is_solution(r["completion"], r["numbers"], r["target"]) for r in records) / len(records)
    assert 0.25 < wrong < 0.55  # half are random expressions, and a random expression is rarely right


def test_bad_options_say_what_to_change():
    with pytest.raises(ValueError, match="num_numbers"):
        make_task("countdown", num_numbers=6)
    with pytest.raises(ValueError, match="valid options"):
        make_task("countdown", digits=3)


# ---------------------------------------------------------------- diversity metrics


def test_pass_at_k_matches_the_combinatorial_definition():
    # n = 5, c = 2, k = 2: 1 - C(3,2)/C(5,2) = 1 - 3/10 = 0.7
    assert abs(pass_at_k(5, 2, 2) - 0.7) < 1e-12
    for n, c, k in [(16, 3, 1), (16, 3, 8), (16, 0, 16), (16, 16, 1), (10, 9, 2)]:
        expected = 1 - math.comb(n - c, k) / math.comb(n, k)
        assert abs(pass_at_k(n, c, k) - expected) < 1e-12
    with pytest.raises(ValueError):
        pass_at_k(4, 5, 1)


def test_entropy_distinct_and_aggregate():
    # 3 of "a", 1 of "b": -(0.75 ln 0.75 + 0.25 ln 0.25) = 0.562335
    assert abs(answer_entropy(["a", "a", "a", "b"]) - 0.5623351446188083) < 1e-12
    assert distinct_correct(["a", "b", "c", "a"], [True, False, True, True]) == 2
    metrics = diversity_metrics(
        [(["a", "a", "b", "c"], [True, True, False, False]), (["x", "y", "z", "w"], [True, True, True, True])],
        ks=(1, 2, 8),
    )
    # prompt 1: acc 0.5, 1 distinct correct, entropy of {a:2, b:1, c:1} = 1.5 ln 2 = 1.039721,
    #           pass@2 = 1 - C(2,2)/C(4,2) = 5/6; prompt 2: acc 1, 4 distinct, entropy ln 4, pass@2 = 1
    assert abs(metrics["accuracy"] - 0.75) < 1e-12
    assert metrics["distinct_correct"] == 2.5
    assert abs(metrics["answer_entropy"] - (1.5 * math.log(2) + math.log(4)) / 2) < 1e-12
    assert abs(metrics["pass@2"] - (5 / 6 + 1) / 2) < 1e-12
    assert "pass@8" not in metrics  # k above the number of samples is skipped


def test_evaluate_diversity_samples_n_per_prompt_and_measures_them(tiny_model, tokenizer):
    from rewardlab.tasks.countdown import countdown_answer
    from rewardlab.trainers.evaluate import evaluate_diversity

    records = make_task("countdown").generate(3, seed=0, split="test")
    metrics = evaluate_diversity(tiny_model, tokenizer, records, countdown_reward, max_new_tokens=4, n=4,
                                 answer_of=countdown_answer, ks=(1, 2, 4))
    assert metrics["accuracy"] == metrics["pass@1"]  # pass@1 is the mean sampled accuracy
    assert metrics["pass@1"] <= metrics["pass@2"] <= metrics["pass@4"] <= 1.0
    assert 0.0 <= metrics["answer_entropy"] <= math.log(4) + 1e-9  # 4 samples: at most ln 4
    assert metrics["distinct_correct"] <= 4
