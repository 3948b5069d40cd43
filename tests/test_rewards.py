import logging
import math
import threading

import pytest
import torch

from rewardlab.registry import UnknownNameError
from rewardlab.rewards import (
    REWARDS,
    RewardError,
    RewardFunctions,
    extract_answer,
    format_reward,
    length_penalty,
    math_equal,
    math_reward,
    summary_metrics,
)

PROMPTS = ["p0", "p1", "p2"]
COMPLETIONS = ["c0", "c1", "c2"]
IDS = [[1], [1, 2], [1, 2, 3]]


def constant(values):
    def reward(completions, **kwargs):
        return list(values)

    return reward


def call(rewards, columns=None, prompts=PROMPTS, completions=COMPLETIONS):
    return rewards(prompts, completions, IDS, columns or {})


# ------------------------------------------------------------------------------------- RewardFunctions


def test_weighted_total_and_per_function():
    def correct(completions, **kwargs):
        return [1.0, 0.0, 1.0]

    def short(completions, **kwargs):
        return [0.5, 0.25, 0.0]

    total, per_function = call(RewardFunctions([correct, short], weights=[2.0, -1.0]))
    # 2*1 - 0.5 = 1.5 ; 2*0 - 0.25 = -0.25 ; 2*1 - 0 = 2.0
    assert total.dtype == torch.float32 and total.shape == (3,)
    assert total.tolist() == [1.5, -0.25, 2.0]
    assert list(per_function) == ["correct", "short"]
    assert per_function["short"].tolist() == [0.5, 0.25, 0.0]  # unweighted


def test_single_callable_and_default_weights():
    rewards = RewardFunctions(constant([1, 2, 3]))
    assert rewards.weights == [1.0]
    total, _ = call(rewards)
    assert total.tolist() == [1.0, 2.0, 3.0]


def test_duplicate_names_get_suffixes():
    rewards = RewardFunctions([format_reward("a"), format_reward("b"), format_reward("c")])
    assert rewards.names == ["format", "format_2", "format_3"]


def test_inputs_reach_functions_with_trl_keywords():
    seen = {}

    def spy(prompts, completions, completion_ids, answer, **kwargs):
        seen.update(prompts=prompts, completions=completions, completion_ids=completion_ids, answer=answer, **kwargs)
        return [0.0] * len(completions)

    call(RewardFunctions(spy), columns={"answer": ["1", "2", "3"], "level": [1, 2, 3]})
    # TRL's trainer_state, log_extra and log_metric come too (tests/test_trl_compat.py checks what they do)
    assert {k: v for k, v in seen.items() if k not in ("trainer_state", "log_extra", "log_metric")} == {
        "prompts": PROMPTS, "completions": COMPLETIONS, "completion_ids": IDS,
        "answer": ["1", "2", "3"], "level": [1, 2, 3],
    }
    assert seen["trainer_state"].global_step == 0 and callable(seen["log_extra"]) and callable(seen["log_metric"])


def test_none_is_ignored_in_total_and_nan_in_per_function():
    rewards = RewardFunctions([constant([1.0, None, 2.0]), constant([None, 3.0, None])], weights=[1.0, 10.0])
    assert rewards.names == ["reward", "reward_2"]
    total, per_function = call(rewards)
    assert total.tolist() == [1.0, 30.0, 2.0]
    first = per_function["reward"]
    assert first[0] == 1.0 and math.isnan(first[1]) and first[2] == 2.0


def test_all_none_sample_totals_zero_and_warns_once(caplog):
    rewards = RewardFunctions([constant([None, 1.0, None]), constant([None, None, None])])
    with caplog.at_level(logging.WARNING, logger="rewardlab.rewards.base"):
        total, _ = call(rewards)
        call(rewards)
    assert total.tolist() == [0.0, 1.0, 0.0]
    warnings = [r for r in caplog.records if "returned None" in r.getMessage()]
    assert len(warnings) == 1
    assert "2 of 3 samples" in warnings[0].getMessage()


def test_raising_function_is_named_and_chained():
    def broken(completions, **kwargs):
        raise KeyError("boom")

    with pytest.raises(RewardError, match="reward function broken raised KeyError") as info:
        call(RewardFunctions(broken))
    assert isinstance(info.value.__cause__, KeyError)


def test_missing_kwargs_hint():
    def strict(completions, answer):
        return [0.0] * len(completions)

    with pytest.raises(RewardError, match=r"strict raised TypeError.*\*\*kwargs"):
        call(RewardFunctions(strict), columns={"answer": ["1", "2", "3"], "extra": [0, 0, 0]})


def test_missing_column_hint():
    with pytest.raises(RewardError, match=r"math_reward raised TypeError.*'answer'.*available: level.*add the missing column"):
        call(RewardFunctions(math_reward), columns={"level": [1, 2, 3]})


def test_wrong_count_names_expected_and_got():
    with pytest.raises(RewardError, match="reward function reward returned 2 values, expected 3"):
        call(RewardFunctions(constant([1.0, 1.0])))


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_names_function_sample_and_text(bad):
    long_completion = "x" * 1000

    def scorer(completions, **kwargs):
        return [0.0, bad, 0.0]

    with pytest.raises(RewardError) as info:
        call(RewardFunctions(scorer), completions=["c0", long_completion, "c2"])
    message = str(info.value)
    assert "reward function scorer" in message and "sample 1" in message
    assert "prompt: p1" in message and "completion: xxx" in message
    assert len(message) < 700  # the 1000-char completion was truncated


@pytest.mark.parametrize("bad", ["1.0", [1.0], {"a": 1}])
def test_non_numeric_value_is_rejected(bad):
    with pytest.raises(RewardError, match="reward function reward returned a .* for sample 2"):
        call(RewardFunctions(constant([0.0, 1.0, bad])))


def test_returning_none_or_string_is_rejected():
    def forgot(completions, **kwargs):
        [1.0] * len(completions)

    with pytest.raises(RewardError, match="forgot returned None.*return"):
        call(RewardFunctions(forgot))
    with pytest.raises(RewardError, match="returned a str"):
        call(RewardFunctions(lambda completions, **kw: "abc"))


def test_tensor_and_bool_values_are_accepted():
    total, _ = call(RewardFunctions([constant([True, False, True]), lambda completions, **kw: torch.tensor([1.0, 2.0, 3.0])]))
    assert total.tolist() == [2.0, 2.0, 4.0]


def test_construction_errors():
    with pytest.raises(RewardError, match="2 reward weights for 1 reward functions"):
        RewardFunctions([constant([])], weights=[1.0, 2.0])
    with pytest.raises(RewardError, match="not a callable"):
        RewardFunctions([constant([]), 3])
    with pytest.raises(RewardError, match="at least one"):
        RewardFunctions([])


def test_column_length_mismatch_and_reserved_names():
    rewards = RewardFunctions(constant([0.0, 0.0, 0.0]))
    with pytest.raises(RewardError, match="column 'answer' has 2 values for 3 completions"):
        call(rewards, columns={"answer": ["1", "2"]})
    with pytest.raises(RewardError, match="column 'completions' clashes"):
        call(rewards, columns={"completions": ["1", "2", "3"]})


def test_string_names_resolve_through_registry():
    rewards = RewardFunctions(["math", "format_boxed"])
    assert rewards.names == ["math_reward", "format_boxed"]  # names are __name__, not registry keys
    total, per_function = rewards(["q"], ["so \\boxed{4}"], [[1]], {"answer": ["4"]})
    assert total.tolist() == [2.0]
    with pytest.raises(UnknownNameError, match="valid: "):
        RewardFunctions(["maths"])


def test_summary_metrics_is_nan_aware():
    metrics = summary_metrics({"a": torch.tensor([1.0, 3.0, math.nan]), "b": torch.tensor([math.nan, math.nan])})
    assert metrics["rewards/a/mean"] == 2.0
    assert metrics["rewards/a/std"] == 1.0  # population std of [1, 3]
    assert math.isnan(metrics["rewards/b/mean"]) and math.isnan(metrics["rewards/b/std"])


# ------------------------------------------------------------------------------------------------- math


@pytest.mark.parametrize(
    "text, expected",
    [
        ("The answer is \\boxed{42}.", "42"),
        ("\\boxed{1} then \\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),
        ("\\boxed{\\sqrt{\\frac{a}{b}}} done", "\\sqrt{\\frac{a}{b}}"),
        ("first \\boxed{7} then \\boxed{unclosed", "7"),  # a truncated box is skipped
        ("2 + 3 = 5", "5"),
        ("it drops to -12 degrees", "-12"),
        ("pi is about 3.14.", "3.14"),
        ("three quarters: 3/4", "3/4"),
        ("5-3 = 2, 7-9", "9"),  # a minus between digits is subtraction, not a sign
        ("total 1,234,567 units", "1234567"),
        ("no numbers at all", None),
        ("", None),
    ],
)
def test_extract_answer(text, expected):
    assert extract_answer(text) == expected


@pytest.mark.parametrize(
    "pred, gold, expected",
    [
        ("\\frac{1}{2}", "0.5", True),
        ("0.5", "\\frac{1}{2}", True),
        ("3/4", "0.75", True),
        ("-3", "-3.0", True),
        ("x^2 + 1", "1 + x^2", True),
        ("2", "3", False),
        ("", "3", False),
        ("0.333", "1/3", False),
    ],
)
def test_math_equal(pred, gold, expected):
    assert math_equal(pred, gold) is expected


def test_math_equal_works_outside_the_main_thread():
    # math_verify's default timeout uses signal.alarm, which raises in a worker thread.
    results = []
    worker = threading.Thread(target=lambda: results.append(math_equal("\\frac{1}{2}", "0.5")))
    worker.start()
    worker.join()
    assert results == [True]


def test_math_equal_falls_back_when_math_verify_cannot_parse(monkeypatch):
    import rewardlab.rewards.math as math_module

    monkeypatch.setattr(math_module, "_math_verify_equal", lambda pred, gold: None)
    assert math_equal("\\frac{1}{2}", "0.5")
    assert math_equal("1,000", "1000")
    assert math_equal("Paris.", "paris")
    assert not math_equal("2", "3")


def test_math_reward_strings_and_chat():
    completions = [
        "so \\boxed{\\frac{1}{2}}",
        [{"role": "assistant", "content": "the answer is 0.5"}],
        "I give up",
        "it is 7",
    ]
    assert math_reward(completions, answer=["0.5", "1/2", "0.5", 7], extra="ignored") == [1.0, 1.0, 0.0, 1.0]


def test_math_reward_length_mismatch():
    with pytest.raises(ValueError, match="2 completions but 1 answers"):
        math_reward(["1", "2"], answer=["1"])


# ----------------------------------------------------------------------------------------------- format


def test_format_reward_fullmatch_on_stripped_text():
    reward = format_reward(r"<answer>\d+</answer>")
    assert reward.__name__ == "format"
    completions = ["  <answer>12</answer>\n", "<answer>12</answer> extra", "<answer>\n12</answer>",
                   [{"role": "assistant", "content": "<answer>3</answer>"}]]
    assert reward(completions=completions, prompts=["p"] * 4) == [1.0, 0.0, 0.0, 1.0]
    assert format_reward(r"<a>.*</a>")(completions=["<a>line1\nline2</a>"]) == [1.0]  # re.S: '.' spans lines


def test_format_reward_bad_pattern():
    with pytest.raises(ValueError, match="not a valid regular expression"):
        format_reward("(unclosed")


def test_length_penalty_dapo_shape():
    penalty = length_penalty(max_len=100, cache_len=20)
    lengths = [0, 80, 81, 90, 100, 101, 500]
    # buffer starts at 80: (80 - L) / 20
    expected = [0.0, 0.0, -1 / 20, -10 / 20, -1.0, -1.0, -1.0]
    got = penalty(completion_ids=[[0] * n for n in lengths], completions=[""] * len(lengths))
    assert got == pytest.approx(expected, abs=1e-12)
    assert penalty.__name__ == "length_penalty"
    with pytest.raises(ValueError, match="cache_len"):
        length_penalty(max_len=10, cache_len=0)


def test_registry_builtins():
    assert {"math", "format_answer_tag", "format_think_answer", "format_boxed"} <= set(REWARDS.names())
    assert REWARDS["math"] is math_reward
    assert REWARDS["format_answer_tag"](completions=["work... <answer>4</answer>", "4"]) == [1.0, 0.0]
    assert REWARDS["format_think_answer"](completions=["<think>hm</think>\n<answer>4</answer>"]) == [1.0]
