"""The built-in `chain` task: add a list of numbers step by step, one running sum per line, for process rewards.

    prompt      "7+5+9+3="
    completion  "12\\n21\\n24"        the running sums after the second, third, ... term; the last is the answer

Each line is a step. A step is *on the path* when its running sum is right and every step before it was
(`step_labels`): after a wrong sum no later line is a valid step, whether it adds correctly from the wrong
value (22 + 3 = 25) or writes the right sum anyway (22, then 24). These are the labels a process reward model learns (rewardlab train prm); the outcome
verifier (`chain_reward`) checks the last line against the answer only.

Demonstrations come from a sloppy demonstrator: with probability sloppy_rate one step (chosen uniformly) is
off by one, up or down, and the later steps carry on from the wrong sum, so SFT on them learns to make
mistakes that a step verifier can locate. A problem's split is a hash of its canonical form, the terms sorted
("3+5+7+9"), so a reordering of a test problem (the same answer by other steps) is never trained on.
"""

from __future__ import annotations

import itertools
import math
import random
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache

from .splits import EVAL_SPLITS, check_fractions, check_split, sample_without_replacement, split_of

STEP_SEPARATOR = "\n"


def parse_terms(prompt: str | list[dict]) -> list[int]:
    """The terms of a prompt ("7+5+9=", a chat prompt whose last message holds it, or a dialogue's second turn
    "7+5+9=12\n22\nno, line 2 is wrong\n") -> [7, 5, 9]."""
    text = prompt[-1]["content"] if isinstance(prompt, list) else prompt
    body = text.strip().split("=", 1)[0]
    try:
        return [int(t) for t in body.split("+")]
    except ValueError:
        raise ValueError(f"chain: not a sum of integers: {text!r} (expected e.g. '7+5+9=')") from None


def running_sums(terms: list[int]) -> list[int]:
    """[7, 5, 9, 3] -> [12, 21, 24]: the sum after each term from the second on."""
    sums, total = [], terms[0]
    for term in terms[1:]:
        total += term
        sums.append(total)
    return sums


def completion_steps(completion: str) -> list[str]:
    """The steps a completion writes: its lines, stripped, empty lines dropped."""
    return [line.strip() for line in completion.split(STEP_SEPARATOR) if line.strip()]


def step_labels(terms: list[int], steps: list[str]) -> list[bool]:
    """Per written step: on the path to the answer (its sum right and all before it right). Steps past the
    number of sums the problem has are off the path."""
    labels, on_path = [], True
    for i, step in enumerate(steps):
        right = i < len(terms) - 1 and step == str(running_sums(terms)[i])
        on_path = on_path and right
        labels.append(on_path)
    return labels


def chain_reward(completions: list, answer: list[str], **kwargs) -> list[float]:
    """1.0 when the completion's last line equals the answer (the outcome only), else 0.0.

    >>> chain_reward(completions=["12\\n21\\n24", "12\\n22\\n25", "24"], answer=["24", "24", "24"])
    [1.0, 0.0, 1.0]
    """
    texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
    return [1.0 if (steps := completion_steps(t)) and steps[-1] == str(a) else 0.0 for t, a in zip(texts, answer)]


@dataclass
class ChainTask:
    """Running sums of min_terms..max_terms numbers of 0..max_term each.

    sloppy_rate: the share of demonstrations with one step off by one (the rest carry on from it).
    followup_rate: the share of training records that are a dialogue's second turn: the problem, a chain with a
        slip, the simulated user's follow-up naming the first wrong line (`followup`), and the right chain as the
        completion (the follow-up self-teacher, teacher_context=followup). Held-out records are first turns.
    heldout_fraction / tune_fraction: the test and tune shares of canonical problems (terms sorted).
    """

    min_terms: int = 3
    max_terms: int = 5
    max_term: int = 9
    sloppy_rate: float = 0.5
    heldout_fraction: float = 0.2
    tune_fraction: float = 0.1
    followup_rate: float = 0.0

    name = "chain"

    def __post_init__(self) -> None:
        if not 2 <= self.min_terms <= self.max_terms:
            raise ValueError(f"chain: need 2 <= min_terms <= max_terms, got {self.min_terms}, {self.max_terms}")
        if self.max_term < 1:
            raise ValueError(f"chain: max_term must be >= 1, got {self.max_term}")
        if not 0 <= self.sloppy_rate <= 1 or not 0 <= self.followup_rate <= 1:
            raise ValueError(f"chain: sloppy_rate and followup_rate must be in [0, 1], got {self.sloppy_rate} and "
                             f"{self.followup_rate}")
        check_fractions("chain", self.tune_fraction, self.heldout_fraction)

    def canonical(self, record: dict) -> str:
        return "+".join(map(str, sorted(parse_terms(record["prompt"]))))

    def split_of(self, terms: list[int]) -> str:
        return split_of("+".join(map(str, sorted(terms))), self.tune_fraction, self.heldout_fraction)

    def _terms(self, rng: random.Random) -> list[int]:
        return [rng.randint(0, self.max_term) for _ in range(rng.randint(self.min_terms, self.max_terms))]

    def _record(self, terms: list[int], rng: random.Random) -> dict:
        sums = running_sums(terms)
        written = list(sums)
        if rng.random() < self.sloppy_rate:
            at, slip = rng.randrange(len(sums)), rng.choice((-1, 1))
            written = sums[:at] + [s + slip for s in sums[at:]]
        return {"prompt": "+".join(map(str, terms)) + "=", "answer": str(sums[-1]),
                "completion": STEP_SEPARATOR.join(map(str, written))}

    def generate(self, n: int, seed: int, split: str = "train") -> list[dict]:
        """n records {"prompt", "answer", "completion"}; tune and test sets hold distinct canonical problems."""
        check_split(split)
        rng = random.Random(f"chain-{split}-{seed}")
        if split not in EVAL_SPLITS:
            records = []
            while len(records) < n:
                terms = self._terms(rng)
                if self.split_of(terms) == split:
                    record = self._record(terms, rng)
                    if self.followup_rate and rng.random() < self.followup_rate:
                        record = self._second_turn(record, terms, rng)
                    records.append(record)
            return records

        pool = _listed_split(self.min_terms, self.max_terms, self.max_term, self.tune_fraction, self.heldout_fraction, split)
        records = []
        for multiset in sample_without_replacement(pool, n, rng, f"the chain {split} split"):
            terms = list(multiset)
            rng.shuffle(terms)  # shown in any order, as the generator would
            records.append(self._record(terms, rng))
        return records

    def _second_turn(self, record: dict, terms: list[int], rng: random.Random) -> dict:
        """A dialogue's second turn: a chain with one slip, the user's follow-up, then the right chain."""
        sums = running_sums(terms)
        at, slip = rng.randrange(len(sums)), rng.choice((-1, 1))
        first = STEP_SEPARATOR.join(map(str, sums[:at] + [s + slip for s in sums[at:]]))
        prompt = f"{record['prompt']}{first}\n{self.followup(record, first)}\n"
        right = STEP_SEPARATOR.join(map(str, sums))
        return {"prompt": prompt, "answer": record["answer"], "completion": right}

    def followup(self, record: dict, completion: str) -> str | None:
        """The simulated user's reply to a chain: None when every line is right and none is missing; else a
        complaint that points at the problem: "no, line K is wrong" (the first line off the path), "no, a line is
        missing", or "no, a line too many"."""
        terms = parse_terms(record["prompt"])
        steps, labels = completion_steps(completion), step_labels(terms, completion_steps(completion))
        if False in labels[: len(terms) - 1]:
            return f"no, line {labels.index(False) + 1} is wrong"
        if len(steps) < len(terms) - 1:
            return "no, a line is missing"
        if len(steps) > len(terms) - 1:
            return "no, a line too many"
        return None

    def reward_functions(self) -> list:
        return [chain_reward]

    def step_labels(self, record: dict, completion: str) -> tuple[list[str], list[bool]]:
        """(the completion's steps, whether each is on the path to the answer)."""
        steps = completion_steps(completion)
        return steps, step_labels(parse_terms(record["prompt"]), steps)


@lru_cache(maxsize=8)
def _listed_split(min_terms: int, max_terms: int, max_term: int, tune_fraction: float, test_fraction: float,
                  split: str) -> list[tuple[tuple[int, ...], float]]:
    """Every canonical problem (the terms sorted) of a split, with its probability under the generator: a
    uniform term count, then each ordering of the multiset equally likely."""
    pool = []
    for k in range(min_terms, max_terms + 1):
        for multiset in itertools.combinations_with_replacement(range(max_term + 1), k):
            if split_of("+".join(map(str, multiset)), tune_fraction, test_fraction) == split:
                orderings = math.factorial(k) / math.prod(math.factorial(c) for c in Counter(multiset).values())
                pool.append((multiset, orderings / (max_term + 1) ** k / (max_terms - min_terms + 1)))
    return pool
