"""The synthetic preference task: the gold scorer by hand, the Bradley-Terry labelling, the splits."""

from __future__ import annotations

import math

import pytest

from rewardlab.tasks import PreferenceTask, gold_reward, gold_score, make_task, win_rate
from rewardlab.tasks.preference import prompt_letters


@pytest.mark.parametrize(
    "letters,reply,expected",
    [
        ("qdk", "dkq", 5),  # all three letters, nothing else, sorted
        ("qdk", "qdk", 4),  # not sorted
        ("qdk", "dk", 4),  # one letter missing; only prompt letters; sorted
        ("qdk", "dkqz", 4),  # a stray letter; still sorted
        ("qdk", "zkd", 2),  # two letters; a stray; z > k: not sorted
        ("qdk", "dd", 2),  # "d" once counted, only prompt letters, not strictly increasing
        ("qdk", "x", 1),  # no letter, a stray, a single character counts as sorted
        ("qdk", "", 0),
        ("qdk", " dkq \n", 5),  # surrounding whitespace is ignored
    ],
)
def test_gold_score_by_hand(letters, reply, expected):
    assert gold_score(letters, reply) == expected


def test_gold_reward_scales_to_one_and_reads_chat():
    chat_prompt = [{"role": "user", "content": "qdk:"}]
    assert prompt_letters(chat_prompt) == "qdk"
    assert gold_reward(prompts=["qdk:", chat_prompt], completions=["dkq", [{"role": "assistant", "content": "dk"}]]) == [1.0, 0.8]


def test_win_rate_counts_ties_half():
    # wins: 5>4, 4>1; tie 3=3; loss 2<4 -> (2 + .5) / 4
    assert win_rate([5, 3, 2, 4], [4, 3, 4, 1]) == 0.625
    with pytest.raises(ValueError, match="equally long"):
        win_rate([1.0], [])


def test_pairs_have_distinct_gold_and_noiseless_labels_follow_gold():
    task = PreferenceTask(label_noise=0.0)
    pairs = task.preference_pairs(300, seed=1)
    assert all(task.gold(p["prompt"], p["chosen"]) > task.gold(p["prompt"], p["rejected"]) for p in pairs)
    assert task.expected_label_accuracy(pairs) == 1.0


def test_noisy_labels_follow_the_bradley_terry_probability():
    # P(label agrees with gold) = sigmoid(gap / T). With T = 1 and 6000 pairs, the agreement for gap 1
    # (sigmoid(1) = 0.7311) is estimated within 4 standard errors.
    task = PreferenceTask(label_noise=1.0)
    pairs = task.preference_pairs(6000, seed=0)
    by_gap: dict[float, list[bool]] = {}
    for p in pairs:
        chosen, rejected = task.gold(p["prompt"], p["chosen"]), task.gold(p["prompt"], p["rejected"])
        by_gap.setdefault(abs(chosen - rejected), []).append(chosen > rejected)
    agree = by_gap[1.0]
    expected = 1 / (1 + math.exp(-1.0))
    standard_error = math.sqrt(expected * (1 - expected) / len(agree))
    assert abs(sum(agree) / len(agree) - expected) < 4 * standard_error
    # the task's own ceiling formula is the mean of those probabilities
    predicted = sum(len(v) / (1 + math.exp(-gap)) for gap, v in by_gap.items()) / len(pairs)
    assert task.expected_label_accuracy(pairs) == pytest.approx(predicted, abs=1e-12)


def test_held_out_prompts_are_never_trained_on_in_any_letter_order():
    task = make_task("preference")
    letters = lambda rows: {"".join(sorted(r["prompt"].rstrip(":"))) for r in rows}  # noqa: E731  the ideal reply
    train = letters(task.generate(3000, seed=0)) | letters(task.preference_pairs(3000, seed=5))
    for split in ("tune", "test"):
        held_out = letters(task.generate(300, seed=0, split=split))
        assert len(held_out) == 300 and not train & held_out


def test_demonstrations_are_partly_good():
    task = make_task("preference")
    scores = [task.gold(r["prompt"], r["completion"]) for r in task.generate(2000, seed=0)]
    mean = sum(scores) / len(scores)
    assert 2.0 < mean < 4.0  # room to improve, and something to imitate
    assert 0 < sum(s == 5 for s in scores) / len(scores) < 0.2


def test_unpaired_rows_come_from_pairs():
    task = make_task("preference", chat=True)
    rows = task.unpaired(5, seed=0)
    assert [r["label"] for r in rows] == [True, False, True, False, True]
    assert rows[0]["prompt"] == rows[1]["prompt"] and rows[0]["prompt"][0]["role"] == "user"
    assert rows[0]["completion"][0]["role"] == "assistant"


def test_bad_options_say_what_to_change():
    with pytest.raises(ValueError, match="keep_prob"):
        PreferenceTask(keep_prob=1.5)
    with pytest.raises(ValueError, match="label_noise"):
        PreferenceTask(label_noise=-1)
