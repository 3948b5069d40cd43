"""The built-in `arithmetic` task: "a+b=" -> "c", a generator with difficulty knobs and a verifier.

Problems are split into train, tune and test sets by a hash of their canonical form (operands sorted for
the commutative + and *, so "3+5" and "5+3" are one problem; "5-3" and "3-5" are two), so an evaluation on
the tune or test split never sees a training problem or its commutative twin, whatever the seeds. An
evaluation set holds distinct problems (rewardlab/tasks/splits.py).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import lru_cache

from .splits import (
    EVAL_SPLITS,
    check_fractions,
    check_split,
    draw_distinct,
    sample_without_replacement,
    split_of,
)

OPS = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b}
COMMUTATIVE = ("+", "*")
MAX_LISTED = 200_000  # an evaluation split is listed (and sampled exactly) up to this many ordered problems


def canonical_problem(a: int, op: str, b: int) -> str:
    """The form two presentations of one problem share: operands sorted for + and *, kept for -.

    >>> canonical_problem(5, "+", 3), canonical_problem(3, "+", 5), canonical_problem(5, "-", 3), canonical_problem(3, "-", 5)
    ('3+5', '3+5', '5-3', '3-5')
    """
    if op in COMMUTATIVE:
        a, b = min(a, b), max(a, b)
    return f"{a}{op}{b}"


def parse_problem(prompt: str | list[dict]) -> tuple[int, str, int]:
    """(a, op, b) of a prompt ("17+25=" or a chat prompt whose last message is that; a dialogue's second
    turn, "17+25=32\nno, too small\n", by its first line).

    >>> parse_problem("17+25="), parse_problem([{"role": "user", "content": "9-12="}]), parse_problem("1+2=4\nno, too big\n")
    ((17, '+', 25), (9, '-', 12), (1, '+', 2))
    """
    text = (prompt if isinstance(prompt, str) else prompt[-1]["content"]).strip()
    text = text.split("=", 1)[0] if "\n" in text else text.rstrip("=")
    for i, ch in enumerate(text):
        if ch in OPS and i > 0:
            return int(text[:i]), ch, int(text[i + 1 :])
    raise ValueError(f"not an arithmetic prompt: {text!r}")


def add_without_carry(a: int, b: int) -> str:
    """Column addition that forgets every carry: 17 + 25 -> "32", 95 + 8 -> "93".

    >>> add_without_carry(17, 25), add_without_carry(95, 8), add_without_carry(12, 30)
    ('32', '93', '42')
    """
    width = max(len(str(a)), len(str(b)))
    xs, ys = str(a).zfill(width), str(b).zfill(width)
    return str(int("".join(str((int(x) + int(y)) % 10) for x, y in zip(xs, ys))))


def has_carry(a: int, b: int) -> bool:
    return add_without_carry(a, b) != str(a + b)


def accuracy_by_carry(rows: list[dict]) -> dict[str, float]:
    """Accuracy of per-sample rows ({"prompt", "correct"}) on additions with and without a carry.

    >>> accuracy_by_carry([{"prompt": "17+25=", "correct": True}, {"prompt": "12+30=", "correct": False}])
    {'carry': 1.0, 'no_carry': 0.0, 'n_carry': 1, 'n_no_carry': 1}
    """
    groups: dict[bool, list[bool]] = {True: [], False: []}
    for row in rows:
        text = row["prompt"] if isinstance(row["prompt"], str) else row["prompt"][-1]["content"]
        left, _, right = text.rstrip("=").partition("+")
        if left.isdigit() and right.isdigit():
            groups[has_carry(int(left), int(right))].append(bool(row["correct"]))
    mean = lambda xs: sum(xs) / len(xs) if xs else float("nan")  # noqa: E731
    return {"carry": mean(groups[True]), "no_carry": mean(groups[False]), "n_carry": len(groups[True]), "n_no_carry": len(groups[False])}


def answer_text(completion: str) -> str:
    """The answer a completion gives: its first line, stripped ("82 " -> "82", "82\\nmore" -> "82")."""
    return completion.strip().split("\n", 1)[0].strip() if completion.strip() else ""


def arithmetic_reward(completions: list, answer: list[str], **kwargs) -> list[float]:
    """1.0 when the completion's answer equals the reference exactly, else 0.0.

    >>> arithmetic_reward(completions=["82", " 81", "82\\n"], answer=["82", "82", "82"])
    [1.0, 0.0, 1.0]
    """
    texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
    return [1.0 if answer_text(t) == str(a) else 0.0 for t, a in zip(texts, answer)]


@dataclass
class ArithmeticTask:
    """Integer arithmetic. Knobs: operand digits, operators, held-out share, chat or plain prompts.

    min_digits/max_digits: operand sizes (each operand drawn with a uniformly chosen digit count).
    ops: any of "+", "-", "*".
    heldout_fraction: the share of problems in the test split; tune_fraction: in the tune split (the rest
        is train). A problem's split is a hash of its canonical form (module docstring).
    chat: prompts as chat messages [{"role": "user", "content": "12+34="}] instead of plain text.
    reverse_answer: write the answer least-significant digit first ("17+25=" -> "24"), the order in which
        digits and carries are worked out; small models learn it far faster.
    sloppy_carry_rate: the share of supervised demonstrations ("completion") written by a sloppy
        demonstrator who forgets every carry ("17+25=" -> "32"), as imperfect human or weak-model
        demonstrations would be. "answer", which the verifier checks, is always right. SFT imitates the
        demonstrator's mistakes; RL with the verifier can learn past them.
    followup_rate: the share of training records that are a dialogue's second turn: the problem, a wrong
        first answer, the simulated user's follow-up (`followup`) and, as the completion, the right answer.
        A model cold-started on them revises an answer when a user complains (the follow-up self-teacher,
        teacher_context=followup). Only the train split has them; held-out records are first turns.
    """

    min_digits: int = 1
    max_digits: int = 2
    ops: tuple[str, ...] = ("+",)
    heldout_fraction: float = 0.2
    tune_fraction: float = 0.1
    chat: bool = False
    reverse_answer: bool = False
    sloppy_carry_rate: float = 0.0
    followup_rate: float = 0.0

    name = "arithmetic"

    def __post_init__(self) -> None:
        if not 1 <= self.min_digits <= self.max_digits:
            raise ValueError(f"arithmetic: need 1 <= min_digits <= max_digits, got {self.min_digits}, {self.max_digits}")
        self.ops = tuple(self.ops)
        bad = [o for o in self.ops if o not in OPS]
        if bad or not self.ops:
            raise ValueError(f"arithmetic: unknown operator(s) {bad}; valid: {list(OPS)}")
        if not 0 <= self.sloppy_carry_rate <= 1 or not 0 <= self.followup_rate <= 1:
            raise ValueError(f"arithmetic: sloppy_carry_rate and followup_rate must be in [0, 1], got "
                             f"{self.sloppy_carry_rate} and {self.followup_rate}")
        check_fractions("arithmetic", self.tune_fraction, self.heldout_fraction)

    # ------------------------------------------------------------------ splits

    def split_of(self, a: int, op: str, b: int) -> str:
        """The split ("train", "tune" or "test") of the problem a op b: a hash of its canonical form."""
        return split_of(canonical_problem(a, op, b), self.tune_fraction, self.heldout_fraction)

    def canonical(self, record: dict) -> str:
        """The canonical form of a record's problem ("5+3=" -> "3+5")."""
        return canonical_problem(*parse_problem(record["prompt"]))

    def split_problems(self, split: str) -> list[tuple[tuple[int, str, int], float]] | None:
        """Every canonical problem (a, op, b) of a split with its probability under the generator, or None
        when the task has more than MAX_LISTED ordered problems (then splits are sampled by rejection)."""
        check_split(split)
        return _listed_split(self.min_digits, self.max_digits, self.ops, self.tune_fraction, self.heldout_fraction, split)

    # ------------------------------------------------------------------ records

    def _operand(self, rng: random.Random) -> int:
        digits = rng.randint(self.min_digits, self.max_digits)
        low = 0 if digits == 1 else 10 ** (digits - 1)
        return rng.randint(low, 10**digits - 1)

    def _record(self, a: int, op: str, b: int, rng: random.Random) -> dict:
        text = f"{a}{op}{b}="
        answer = str(OPS[op](a, b))
        completion = answer
        if op == "+" and rng.random() < self.sloppy_carry_rate:
            completion = add_without_carry(a, b)
        if self.reverse_answer:
            answer, completion = answer[::-1], completion[::-1]
        prompt = [{"role": "user", "content": text}] if self.chat else text
        return {"prompt": prompt, "answer": answer, "completion": completion}

    def generate(self, n: int, seed: int, split: str = "train") -> list[dict]:
        """n records {"prompt", "answer", "completion"} from a split ("train", "tune" or "test").

        Training records repeat problems as the generator draws them; a tune or test set holds n distinct
        canonical problems (all of the split, with a warning, when it has fewer).
        """
        check_split(split)
        rng = random.Random(f"arithmetic-{split}-{seed}")
        if split not in EVAL_SPLITS:
            records = []
            while len(records) < n:
                a, b, op = self._operand(rng), self._operand(rng), rng.choice(self.ops)
                if self.split_of(a, op, b) == split:
                    record = self._record(a, op, b, rng)
                    if self.followup_rate and rng.random() < self.followup_rate:
                        record = self._second_turn(record, a, op, b, rng)
                    records.append(record)
            return records
        what = f"the arithmetic {split} split"
        pool = self.split_problems(split)
        if pool is not None:
            problems = []
            for a, op, b in sample_without_replacement(pool, n, rng, what):
                if op in COMMUTATIVE and rng.random() < 0.5:
                    a, b = b, a  # shown in either order, as the generator would
                problems.append((a, op, b))
        else:

            def draw():
                a, b, op = self._operand(rng), self._operand(rng), rng.choice(self.ops)
                return (canonical_problem(a, op, b), (a, op, b)) if self.split_of(a, op, b) == split else None

            problems = draw_distinct(draw, n, what)
        return [self._record(a, op, b, rng) for a, op, b in problems]

    def _second_turn(self, record: dict, a: int, op: str, b: int, rng: random.Random) -> dict:
        """A dialogue's second turn: a wrong first answer (off by 1 to 10 in the hundreds-and-below digits, or
        a forgotten carry), the user's follow-up, then the right answer as the completion."""
        right = OPS[op](a, b)
        wrong = int(add_without_carry(a, b)) if op == "+" and has_carry(a, b) else right + rng.choice((-1, 1)) * rng.randint(1, 10)
        first = str(wrong)[::-1] if self.reverse_answer else str(wrong)
        text = f"{a}{op}{b}={first}\n{self.followup(record, first)}\n"
        prompt = [{"role": "user", "content": text}] if self.chat else text
        return {"prompt": prompt, "answer": record["answer"], "completion": record["answer"]}

    def followup(self, record: dict, completion: str) -> str | None:
        """The simulated user's reply to a first answer: None when it is right; else a complaint with a
        directive hint: "no, too small" / "no, too big" (the direction of the error), or "no, a number" when
        the answer is not one."""
        given = answer_text(completion)
        if given == str(record["answer"]):
            return None
        value = given[::-1] if self.reverse_answer else given
        right = int(record["answer"][::-1] if self.reverse_answer else record["answer"])
        if not value.lstrip("-").isdigit():
            return "no, a number"
        return "no, too small" if int(value) < right else "no, too big"

    def reward_functions(self) -> list:
        return [arithmetic_reward]

    def verify(self, completion: str, record: dict) -> bool:
        return arithmetic_reward([completion], [record["answer"]])[0] == 1.0


def _operand_probabilities(min_digits: int, max_digits: int) -> dict[int, float]:
    """The generator's probability of each operand: a uniform digit count, then a uniform number of it."""
    probs: dict[int, float] = {}
    for digits in range(min_digits, max_digits + 1):
        low = 0 if digits == 1 else 10 ** (digits - 1)
        for x in range(low, 10**digits):
            probs[x] = 1 / ((max_digits - min_digits + 1) * (10**digits - low))
    return probs


@lru_cache(maxsize=32)
def _listed_split(min_digits: int, max_digits: int, ops: tuple[str, ...], tune_fraction: float, test_fraction: float,
                  split: str) -> list[tuple[tuple[int, str, int], float]] | None:
    probs = _operand_probabilities(min_digits, max_digits)
    if len(probs) ** 2 * len(ops) > MAX_LISTED:
        return None
    pool = []
    for op in ops:
        for a, pa in probs.items():
            for b, pb in probs.items():
                if op in COMMUTATIVE and b < a:
                    continue
                if split_of(canonical_problem(a, op, b), tune_fraction, test_fraction) == split:
                    both_orders = 2 if op in COMMUTATIVE and a != b else 1
                    pool.append(((a, op, b), both_orders * pa * pb / len(ops)))
    return pool
