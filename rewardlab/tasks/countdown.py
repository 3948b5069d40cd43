"""The built-in `countdown` task: reach a target with the given numbers and + - * /, many answers per prompt.

A prompt lists the numbers and the target, "3,5,7=22:". A completion is an arithmetic expression such as
"3*5+7" or "7+5*3". The verifier parses it with a small recursive-descent parser over exact fractions
(never Python's eval): it is correct when it uses every given number exactly once (or, with
use_all=False, each at most once), only + - * / and brackets, and equals the target. Division is exact
(7/2 is 7/2, not 3), so an expression through a fraction can still land on an integer target.

Most prompts have several distinct correct answers, which is what makes the task a test of diversity
(FlowRL vs reward maximisers, docs/algorithms.md#flowrl): evaluate with several samples per prompt and
count distinct correct answers, the entropy of the answers and pass@k (monitor/diversity.py).

Demonstrations for the SFT cold start come from a demonstrator who picks uniformly among all correct
answers (so the cold start is diverse), and with probability sloppy_rate writes a random expression of
the same numbers instead, most often wrong. Prompts are split into train, tune and test sets by a hash of
their canonical form, the numbers sorted and the target ("3,5,7=22"; prompts always list the numbers
sorted, and the set of correct answers depends on the multiset only), so held-out prompts are never
trained on, whatever the seeds. Evaluation sets hold distinct prompts (rewardlab/tasks/splits.py).
"""

from __future__ import annotations

import itertools
import math
import random
from collections import Counter
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache

from .splits import (
    EVAL_SPLITS,
    check_fractions,
    check_split,
    draw_distinct,
    sample_without_replacement,
    split_of,
)

OPERATORS = "+-*/"
DIGITS = "0123456789"  # ASCII only: str.isdigit() also takes "²" (which int() refuses) and other scripts' digits
MAX_EXPRESSION_CHARS = 64  # a longer completion is rejected before parsing


class ExpressionError(ValueError):
    """A completion that is not a well-formed expression of integers, + - * / and brackets."""


def _tokens(text: str) -> list[str]:
    tokens, i = [], 0
    while i < len(text):
        ch = text[i]
        if ch.isspace():
            i += 1
        elif ch in DIGITS:
            j = i
            while j < len(text) and text[j] in DIGITS:
                j += 1
            tokens.append(text[i:j])
            i = j
        elif ch in OPERATORS or ch in "()":
            tokens.append(ch)
            i += 1
        else:
            raise ExpressionError(f"unexpected character {ch!r} at position {i}")
    return tokens


def parse_expression(text: str) -> tuple[Fraction, list[int]]:
    """(exact value, integers used in order) of an expression; raises ExpressionError.

    Grammar: expr = term (("+" | "-") term)*; term = atom (("*" | "/") atom)*; atom = integer | "(" expr ")".
    No unary minus, no exponent, no names: nothing but arithmetic can run.

    >>> parse_expression("3*5+7")
    (Fraction(22, 1), [3, 5, 7])
    >>> parse_expression("(8-2)/4")
    (Fraction(3, 2), [8, 2, 4])
    """
    if len(text) > MAX_EXPRESSION_CHARS:
        raise ExpressionError(f"expression longer than {MAX_EXPRESSION_CHARS} characters")
    tokens = _tokens(text)
    if not tokens:
        raise ExpressionError("empty expression")
    pos = 0
    used: list[int] = []

    def peek() -> str | None:
        return tokens[pos] if pos < len(tokens) else None

    def take() -> str:
        nonlocal pos
        pos += 1
        return tokens[pos - 1]

    def atom() -> Fraction:
        token = peek()
        if token is None:
            raise ExpressionError("expression ends where a number or '(' was expected")
        if token == "(":
            take()
            value = expr()
            if peek() != ")":
                raise ExpressionError("unbalanced '('")
            take()
            return value
        if token[0] in DIGITS:
            take()
            used.append(int(token))
            return Fraction(int(token))
        raise ExpressionError(f"expected a number or '(' but found {token!r}")

    def term() -> Fraction:
        value = atom()
        while peek() in ("*", "/"):
            op, right = take(), atom()
            if op == "/" and right == 0:
                raise ExpressionError("division by zero")
            value = value * right if op == "*" else value / right
        return value

    def expr() -> Fraction:
        value = term()
        while peek() in ("+", "-"):
            op, right = take(), term()
            value = value + right if op == "+" else value - right
        return value

    value = expr()
    if pos != len(tokens):
        raise ExpressionError(f"unexpected {tokens[pos]!r} after a complete expression")
    return value, used


def countdown_answer(completion: str) -> str:
    """The expression a completion gives: its first line, spaces removed ("3 * 5 + 7\\n" -> "3*5+7")."""
    return "".join(completion.strip().split("\n", 1)[0].split()) if completion.strip() else ""


def is_solution(expression: str, numbers: list[int], target: int, use_all: bool = True) -> bool:
    """True when `expression` equals `target` using the numbers (each exactly once, or at most once).

    >>> is_solution("3*5+7", [3, 5, 7], 22), is_solution("3*5+7+7", [3, 5, 7], 29), is_solution("2**9", [2, 9], 512)
    (True, False, False)
    """
    try:
        value, used = parse_expression(expression)
    except ExpressionError:
        return False
    pool = sorted(numbers)
    for n in used:
        if n not in pool:
            return False
        pool.remove(n)
    return value == target and (not pool or not use_all)


def countdown_reward(completions: list, numbers: list, target: list, use_all: list | None = None, **kwargs) -> list[float]:
    """1.0 for a completion whose first line is a correct expression, else 0.0 (a reward function).

    >>> countdown_reward(["3*5+7", "7+3*5", "3+5+7"], numbers=[[3, 5, 7]] * 3, target=[22] * 3)
    [1.0, 1.0, 0.0]
    """
    texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
    flags = use_all if use_all is not None else [True] * len(texts)
    return [
        1.0 if is_solution(countdown_answer(t), list(n), int(g), bool(u)) else 0.0
        for t, n, g, u in zip(texts, numbers, target, flags)
    ]


def _render(tree) -> tuple[str, int]:
    """(text, precedence) of an expression tree (an int, or (op, left, right)) with only needed brackets."""
    if isinstance(tree, int):
        return str(tree), 3
    op, left, right = tree
    prec = 1 if op in "+-" else 2
    left_text, left_prec = _render(left)
    right_text, right_prec = _render(right)
    if left_prec < prec:
        left_text = f"({left_text})"
    # a - (b + c), a / (b * c): the right operand of - and / needs brackets at equal precedence too
    if right_prec < prec or (right_prec == prec and op in "-/"):
        right_text = f"({right_text})"
    return f"{left_text}{op}{right_text}", prec


def _value(tree) -> Fraction | None:
    """The exact value of an expression tree, None on a division by zero (the parser agrees: tested)."""
    if isinstance(tree, int):
        return Fraction(tree)
    op, left, right = tree
    a, b = _value(left), _value(right)
    if a is None or b is None or (op == "/" and b == 0):
        return None
    return a + b if op == "+" else a - b if op == "-" else a * b if op == "*" else a / b


def _trees(numbers: tuple[int, ...]):
    """Every expression tree using all of `numbers` once (all orders, operators and bracketings)."""
    if len(numbers) == 1:
        yield numbers[0]
        return
    for split in range(1, len(numbers)):
        for left in _trees(numbers[:split]):
            for right in _trees(numbers[split:]):
                for op in OPERATORS:
                    yield (op, left, right)


@lru_cache(maxsize=4096)
def all_solutions(numbers: tuple[int, ...]) -> dict[int, tuple[str, ...]]:
    """Every distinct expression text using all the numbers once, grouped by its integer value.

    >>> sorted(all_solutions((1, 2))[3])
    ['1+2', '2+1']
    """
    found: dict[int, set[str]] = {}
    for order in set(itertools.permutations(numbers)):
        for tree in _trees(order):
            value = _value(tree)
            if value is not None and value.denominator == 1:
                found.setdefault(int(value), set()).add(_render(tree)[0])
    return {value: tuple(sorted(texts)) for value, texts in found.items()}


def canonical_prompt(numbers: list[int], target: int) -> str:
    """A prompt's canonical form: the numbers sorted, then the target.

    >>> canonical_prompt([7, 3, 5], 22)
    '3,5,7=22'
    """
    return ",".join(map(str, sorted(numbers))) + f"={target}"


MAX_LISTED_TREES = 100_000  # an evaluation split is listed (and sampled exactly) up to this much enumeration


@dataclass
class CountdownTask:
    """Countdown. Knobs: how many numbers, their range, the target range, the demonstrator's sloppiness.

    num_numbers: numbers per prompt (each used exactly once by a correct answer; 3 or 4 keep it small).
    max_number: numbers are drawn from 1..max_number.
    min_target/max_target: targets are drawn among the integers reachable in this range.
    min_solutions: only prompts with at least this many distinct correct expressions (diversity needs > 1).
    sloppy_rate: the share of demonstrations that are a random expression of the numbers (usually wrong).
    heldout_fraction: the share of prompts in the test split; tune_fraction: in the tune split.
    chat: prompts as chat messages instead of plain text.
    """

    num_numbers: int = 3
    max_number: int = 9
    min_target: int = 1
    max_target: int = 50
    min_solutions: int = 2
    sloppy_rate: float = 0.0
    heldout_fraction: float = 0.2
    tune_fraction: float = 0.1
    chat: bool = False

    name = "countdown"

    def __post_init__(self) -> None:
        if not 2 <= self.num_numbers <= 4:
            raise ValueError(f"countdown: num_numbers must be 2, 3 or 4 (solutions are enumerated), got {self.num_numbers}")
        if not 1 <= self.max_number <= 99:
            raise ValueError(f"countdown: max_number must be in 1..99, got {self.max_number}")
        if self.min_target > self.max_target:
            raise ValueError(f"countdown: min_target ({self.min_target}) is above max_target ({self.max_target})")
        if not 0 <= self.sloppy_rate <= 1:
            raise ValueError(f"countdown: sloppy_rate must be in [0, 1], got {self.sloppy_rate}")
        check_fractions("countdown", self.tune_fraction, self.heldout_fraction)
        if self.min_solutions < 1:
            raise ValueError(f"countdown: min_solutions must be >= 1, got {self.min_solutions}")

    # ------------------------------------------------------------------ splits

    def split_of(self, numbers: list[int], target: int) -> str:
        """The split ("train", "tune" or "test") of a prompt: a hash of its canonical form."""
        return split_of(canonical_prompt(numbers, target), self.tune_fraction, self.heldout_fraction)

    def canonical(self, record: dict) -> str:
        """The canonical form of a record's prompt ("3,5,7=22")."""
        return canonical_prompt(record["numbers"], record["target"])

    def _targets(self, solutions: dict[int, tuple[str, ...]]) -> list[int]:
        return sorted(t for t, s in solutions.items() if self.min_target <= t <= self.max_target and len(s) >= self.min_solutions)

    def split_problems(self, split: str) -> list[tuple[tuple[tuple[int, ...], int], float]] | None:
        """Every prompt (numbers, target) of a split with its (unnormalised) probability under the generator,
        or None when listing them would enumerate too many expressions (then splits are sampled by rejection)."""
        check_split(split)
        trees = math.factorial(self.num_numbers) * math.comb(2 * self.num_numbers - 2, self.num_numbers - 1) // self.num_numbers
        if math.comb(self.max_number + self.num_numbers - 1, self.num_numbers) * trees * 4 ** (self.num_numbers - 1) > MAX_LISTED_TREES:
            return None
        pool = []
        for numbers in itertools.combinations_with_replacement(range(1, self.max_number + 1), self.num_numbers):
            targets = self._targets(all_solutions(numbers))
            orders = math.factorial(self.num_numbers) / math.prod(math.factorial(c) for c in Counter(numbers).values())
            for target in targets:
                if self.split_of(list(numbers), target) == split:
                    pool.append(((numbers, target), orders / self.max_number**self.num_numbers / len(targets)))
        return pool

    # ------------------------------------------------------------------ records

    def _draw(self, rng: random.Random) -> tuple[list[int], int] | None:
        numbers = sorted(rng.randint(1, self.max_number) for _ in range(self.num_numbers))
        targets = self._targets(all_solutions(tuple(numbers)))
        return (numbers, rng.choice(targets)) if targets else None

    def _record(self, numbers: list[int], target: int, rng: random.Random) -> dict:
        answers = all_solutions(tuple(numbers))[target]
        completion = rng.choice(answers)
        if rng.random() < self.sloppy_rate:
            order = tuple(rng.sample(numbers, len(numbers)))
            completion = _render(rng.choice(list(_trees(order))))[0]
        text = f"{','.join(map(str, numbers))}={target}:"
        prompt = [{"role": "user", "content": text}] if self.chat else text
        return {
            "prompt": prompt, "numbers": numbers, "target": target, "answer": rng.choice(answers),
            "completion": completion, "num_solutions": len(answers),
        }

    def generate(self, n: int, seed: int, split: str = "train") -> list[dict]:
        """n records {"prompt", "numbers", "target", "answer", "completion", "num_solutions"} from a split
        ("train", "tune" or "test"); a tune or test set holds n distinct prompts (all of the split, with a
        warning, when it has fewer).

        "answer" is one correct expression (a reference, e.g. for a self-teacher); "completion" is the
        demonstrator's, right or (with sloppy_rate) not.
        """
        check_split(split)
        rng = random.Random(f"countdown-{split}-{seed}")
        if split in EVAL_SPLITS:
            what = f"the countdown {split} split"
            pool = self.split_problems(split)
            if pool is not None:
                problems = [(list(numbers), target) for numbers, target in sample_without_replacement(pool, n, rng, what)]
            else:

                def draw():
                    drawn = self._draw(rng)
                    if drawn is None or self.split_of(*drawn) != split:
                        return None
                    return canonical_prompt(*drawn), drawn

                problems = draw_distinct(draw, n, what)
            return [self._record(numbers, target, rng) for numbers, target in problems]
        records: list[dict] = []
        attempts = 0
        while len(records) < n:
            attempts += 1
            if attempts > 200 * n + 10_000:
                raise ValueError(
                    "countdown: could not find enough prompts with these options; widen the target range, "
                    "raise max_number or lower min_solutions"
                )
            drawn = self._draw(rng)
            if drawn is not None and self.split_of(*drawn) == split:
                records.append(self._record(*drawn, rng))
        return records

    def reward_functions(self) -> list:
        return [countdown_reward]

    def verify(self, completion: str, record: dict) -> bool:
        """Whether the reward function (training's judge) gives this completion 1.0."""
        use_all = [record["use_all"]] if "use_all" in record else None
        return countdown_reward([completion], numbers=[record["numbers"]], target=[record["target"]], use_all=use_all)[0] == 1.0
