"""The built-in `code` task: write a one-line Python function from a few input/output examples.

A prompt shows what an unknown integer function f returns on a few inputs, and asks for f:

    f(-1)=-2,f(0)=1,f(1)=4,f(2)=7,f(3)=10;f(x)=        ->   3*x+1

The completion is a Python expression in x (or, from a larger model, a whole ``def f(x): ...`` or a
```` ```python ```` block). The reward wraps an expression into ``def f(x):\\n    return (<expr>)`` and runs
the program in the code sandbox (rewardlab/rewards/code.py) against the row's hidden tests: calls of f on
other inputs (four below and four above the shown ones), whose expected values stay on the host. The
reward is the fraction of hidden tests passed, so an expression right on part of the domain (``x+4`` for
``max(x,1)+4``) earns part of it.

Functions come from a few small families: linear ``a*x+b`` (a constant when a = 0), ``x*x+b`` and
``-x*x+b``, ``max(x,c)+b``, ``min(x,c)+b``, ``abs(x-c)+b``, ``x%m+b`` and ``x//m+b``, with parameters chosen so
that the shown examples determine the function (no two functions of the task show the same examples;
tested).

Splits: a function's canonical form is its table of values on every input the task ever uses (-12..12), so
two expressions of one function ("3*x+1" and "1+x*3", or "x%1" and "0") are one problem, and a function's
split is a hash of that table (rewardlab/tasks/splits.py). A held-out function is never trained on, in any
writing. Tune and test sets hold distinct functions; each split is small enough to list, so an evaluation
set is drawn without replacement (all of the split, with a warning, when more are asked for).

Demonstrations for the SFT cold start are the canonical expression; with probability ``sloppy_rate`` the
demonstrator writes a near miss instead (a piecewise function's straight part, a linear function's
slope with the wrong intercept, ...), which SFT imitates and the reward can tell apart.

``style="compact"`` (default) is the short prompt above, for the tiny character model (256 positions);
``style="verbose"`` says the same in a sentence, for instruction-following models used as they are.
"""

from __future__ import annotations

import ast
import json
import random
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from .splits import EVAL_SPLITS, check_fractions, check_split, sample_without_replacement, split_of

SHOWN_INPUTS = (-1, 0, 1, 2, 3)
"""The inputs every prompt shows f on, in this order."""
HIDDEN_BELOW = tuple(range(-12, -1))
HIDDEN_ABOVE = tuple(range(4, 13))
"""Hidden tests call f on inputs from these ranges (never a shown one): half below, half above."""
PROBES = tuple(range(-12, 13))
"""Every input the task uses; a function's canonical form is its values here."""
MAX_PROGRAM_CHARS = 2000
"""A longer completion scores 0 without running (a one-line function needs far less)."""

FAMILIES = ("linear", "square", "max", "min", "abs", "mod", "floordiv")
DEFAULT_WEIGHTS = {"linear": 0.35, "square": 0.15, "max": 0.1, "min": 0.1, "abs": 0.1, "mod": 0.1, "floordiv": 0.1}


# ------------------------------------------------------------------------------------------ functions
@dataclass(frozen=True)
class Function:
    """One target function: its family, its canonical expression, and its values on PROBES."""

    family: str
    expression: str
    values: tuple[int, ...]
    near_misses: tuple[str, ...]

    def __call__(self, x: int) -> int:
        return self.values[PROBES.index(x)]

    @property
    def key(self) -> str:
        """The canonical form: the values on every input the task uses ("-38,-35,...")."""
        return canonical_values(self.values)


def canonical_values(values) -> str:
    return ",".join(map(str, values))


def _linear_text(a: int, b: int) -> str:
    """a*x+b written the way the demonstrator writes it: "3*x+1", "-x-2", "x", "5", "-2*x".

    >>> [_linear_text(a, b) for a, b in [(3, 1), (-1, -2), (1, 0), (0, 5), (-2, 0), (0, 0)]]
    ['3*x+1', '-x-2', 'x', '5', '-2*x', '0']
    """
    slope = {0: "", 1: "x", -1: "-x"}.get(a, f"{a}*x")
    if not slope:
        return str(b)
    return slope + (f"+{b}" if b > 0 else f"-{-b}" if b < 0 else "")


def _plus(head: str, b: int) -> str:
    """head+b without "+0" or "+-": ("x*x", 2) -> "x*x+2", ("x%3", -1) -> "x%3-1", ("abs(x)", 0) -> "abs(x)"."""
    return head + (f"+{b}" if b > 0 else f"-{-b}" if b < 0 else "")


def _square_text(sign: int, b: int) -> str:
    """sign*x*x+b: "x*x+2", "-x*x-3", "x*x"."""
    return _plus("x*x" if sign > 0 else "-x*x", b)


def _offset(c: int) -> str:
    return "x" if c == 0 else f"x-{c}" if c > 0 else f"x+{-c}"


def _candidates() -> list[tuple[str, str, Callable[[int], int], tuple[str, ...]]]:
    """(family, expression, function, near misses) for every member of every family."""
    out = []
    for a in range(-9, 10):
        for b in range(-30, 31):
            misses = (_linear_text(a, b + 1), _linear_text(a, b - 1), _linear_text(a + 1, b))
            out.append(("linear", _linear_text(a, b), lambda x, a=a, b=b: a * x + b, misses))
    for sign in (1, -1):
        for b in range(-30, 31):
            misses = (_square_text(sign, b + 1), _square_text(sign, b - 1), _linear_text(sign, b))
            out.append(("square", _square_text(sign, b), lambda x, s=sign, b=b: s * x * x + b, misses))
    for b in range(-15, 16):
        for c in (0, 1, 2):  # strictly inside the shown inputs, so the examples show both pieces
            out.append(("max", _plus(f"max(x,{c})", b), lambda x, c=c, b=b: max(x, c) + b, (_linear_text(1, b), str(c + b))))
            out.append(("min", _plus(f"min(x,{c})", b), lambda x, c=c, b=b: min(x, c) + b, (_linear_text(1, b), str(c + b))))
            out.append(("abs", _plus(f"abs({_offset(c)})", b), lambda x, c=c, b=b: abs(x - c) + b,
                        (_linear_text(1, b - c), _linear_text(-1, b + c))))
        for m in (2, 3, 4, 5):
            out.append(("mod", _plus(f"x%{m}", b), lambda x, m=m, b=b: x % m + b, (_linear_text(1, b), _plus(f"x%{m + 1}", b))))
        for m in (2, 3):  # x//4 shows the same examples as min(x,0)
            out.append(("floordiv", _plus(f"x//{m}", b), lambda x, m=m, b=b: x // m + b, (_linear_text(1, b), _plus(f"x//{m + 1}", b))))
    return out


@lru_cache(maxsize=1)
def all_functions() -> tuple[Function, ...]:
    """Every function of the task, one per canonical form (the first family to produce it keeps it).

    Raises if two different functions would show the same examples (the prompt would not determine
    the answer): the family parameters are chosen so that this never happens, and a test checks it.
    """
    by_key: dict[str, Function] = {}
    shown: dict[tuple[int, ...], str] = {}
    for family, text, fn, misses in _candidates():
        values = tuple(fn(x) for x in PROBES)
        key = canonical_values(values)
        if key in by_key:
            continue
        seen = tuple(fn(x) for x in SHOWN_INPUTS)
        if seen in shown:
            raise AssertionError(f"code task: {text} and {shown[seen]} show the same examples")
        shown[seen] = text
        by_key[key] = Function(family, text, values, tuple(m for m in dict.fromkeys(misses) if m != text))
    return tuple(by_key.values())


def hidden_inputs(fn: Function, n_tests: int) -> list[int]:
    """The inputs of a function's hidden tests: n_tests // 2 below the shown inputs, the rest above,
    drawn by a generator seeded with the canonical form (the same tests whatever the seed or split)."""
    rng = random.Random(f"code-tests-{fn.key}")
    below = rng.sample(HIDDEN_BELOW, n_tests // 2)
    above = rng.sample(HIDDEN_ABOVE, n_tests - n_tests // 2)
    return sorted(below + above)


# ------------------------------------------------------------------------------------- completions
_DEF_F = re.compile(r"^\s*(def\s+f\s*\(|f\s*=\s*lambda\b)", re.M)
_LEADING = re.compile(r"^(?:return\s+|f\s*\(\s*x\s*\)\s*=\s*|f\s*=\s*)")


def program_of(completion: str) -> str:
    """The program a completion stands for: a definition of f as written (``def f(x): ...`` or
    ``f = lambda x: ...``, also inside a fenced block), else its first line as an expression in x.

    >>> program_of("3*x+1")
    'def f(x):\\n    return (3*x+1)\\n'
    >>> program_of(" f(x) = max(x, 2)\\nbecause ...")
    'def f(x):\\n    return (max(x, 2))\\n'
    >>> program_of("```python\\ndef f(x):\\n    return x % 3\\n```")
    'def f(x):\\n    return x % 3\\n'
    """
    from ..rewards.code import extract_code

    code = extract_code(completion)
    if _DEF_F.search(code):
        return code
    line = next((ln.strip() for ln in code.splitlines() if ln.strip()), "")
    line = _LEADING.sub("", line.rstrip(";")).strip()
    if line.startswith("lambda"):
        return f"f = {line}\n"
    return f"def f(x):\n    return ({line})\n"


def _parses(program: str) -> bool:
    if not program.strip() or len(program) > MAX_PROGRAM_CHARS:
        return False
    try:
        with warnings.catch_warnings():  # "invalid decimal literal" and the like: a model's typos, not ours
            warnings.simplefilter("ignore")
            ast.parse(program)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return False
    return True


def make_code_task_reward(sandbox: str = "auto", limits=None, workers: int | None = None, cache_size: int = 100_000):
    """The task's reward (TRL's convention): the fraction of each row's hidden ``tests`` that the
    completion's f passes, run in the code sandbox.

    Each distinct (program, tests) pair of a batch runs once; a program that does not parse scores 0
    without running; results of runs that ended normally ("ok", or a syntax error the sandbox found) are
    remembered (up to cache_size), since the same expression for the same function earns the same reward.
    Runs that ended otherwise (a timeout under load, say) are not remembered.
    """
    from ..rewards.code import SandboxLimits, run_batch
    from ..rewards.math import completion_text

    limits = limits or SandboxLimits(timeout_s=2.0)
    cache: dict[tuple[str, str], float] = {}
    stats = {"completions": 0, "sandbox_runs": 0, "cache_hits": 0, "unparsed": 0}

    def code_task(completions: list, tests: list, **kwargs: Any) -> list[float | None]:
        if len(tests) != len(completions):
            raise ValueError(f"code_task got {len(completions)} completions but {len(tests)} rows of tests")
        rewards: list[float | None] = [None] * len(completions)
        todo: dict[tuple[str, str], list[int]] = {}
        for i, (completion, row) in enumerate(zip(completions, tests)):
            if not row:
                continue  # no tests: the reward does not apply
            stats["completions"] += 1
            program = program_of(completion_text(completion))
            if not _parses(program):
                stats["unparsed"] += 1
                rewards[i] = 0.0
                continue
            key = (program, row if isinstance(row, str) else json.dumps(row))
            if key in cache:
                stats["cache_hits"] += 1
                rewards[i] = cache[key]
            else:
                todo.setdefault(key, []).append(i)
        keys = list(todo)
        results = run_batch([k[0] for k in keys], [k[1] for k in keys], sandbox=sandbox, limits=limits, workers=workers)
        stats["sandbox_runs"] += len(keys)
        for key, result in zip(keys, results):
            if result.status in ("ok", "syntax_error") and len(cache) < cache_size:
                cache[key] = result.reward
            for i in todo[key]:
                rewards[i] = result.reward
        return rewards

    code_task.stats = stats  # type: ignore[attr-defined]
    code_task.__name__ = code_task.__qualname__ = "code_task"
    return code_task


code_task_reward = make_code_task_reward()


# ------------------------------------------------------------------------------------------- the task
def _prompt_text(fn: Function, style: str) -> str:
    pairs = [(x, fn(x)) for x in SHOWN_INPUTS]
    if style == "compact":
        return ",".join(f"f({x})={y}" for x, y in pairs) + ";f(x)="
    examples = ", ".join(f"f({x}) = {y}" for x, y in pairs)
    return (
        f"An integer function f has {examples}. Write f as one Python expression in x, using integers, "
        "+, -, *, //, %, abs, min and max, that also gives the right value on other integers. "
        "Reply with the expression only."
    )


@dataclass
class CodeTask:
    """Function writing from examples, scored by hidden unit tests run in the sandbox.

    n_tests: hidden tests per function (half on inputs below the shown ones, half above).
    families: which function families to use (FAMILIES); weights: the generator's probability of each
        family (default DEFAULT_WEIGHTS), a member of a family then drawn uniformly.
    sloppy_rate: the share of demonstrations that are a near miss instead of the canonical expression.
    style: "compact" (short, for the tiny model) or "verbose" (a sentence, for instruction models).
    heldout_fraction: the share of functions in the test split; tune_fraction: in the tune split.
    chat: prompts as chat messages instead of plain text.
    sandbox: the sandbox mode of the reward ("auto", "bwrap" or "rlimits"; docs/sandbox.md).
    """

    n_tests: int = 8
    families: tuple[str, ...] = FAMILIES
    weights: dict | None = None
    sloppy_rate: float = 0.0
    style: str = "compact"
    heldout_fraction: float = 0.2
    tune_fraction: float = 0.1
    chat: bool = False
    sandbox: str = "auto"

    name = "code"

    def __post_init__(self) -> None:
        self.families = tuple(self.families)
        bad = [f for f in self.families if f not in FAMILIES]
        if bad or not self.families:
            raise ValueError(f"code: unknown famil(ies) {bad}; valid: {list(FAMILIES)}")
        weights = dict(self.weights) if self.weights is not None else DEFAULT_WEIGHTS
        unknown = [f for f in weights if f not in FAMILIES]
        if unknown:
            raise ValueError(f"code: weights name unknown famil(ies) {unknown}; valid: {list(FAMILIES)}")
        self._weights = {f: float(weights.get(f, 0.0)) for f in self.families}
        if any(w < 0 for w in self._weights.values()) or sum(self._weights.values()) <= 0:
            raise ValueError(f"code: family weights must be >= 0 with a positive sum, got {self._weights}")
        if not 2 <= self.n_tests <= len(HIDDEN_ABOVE) + len(HIDDEN_BELOW):
            raise ValueError(f"code: n_tests must be in 2..{len(HIDDEN_ABOVE) + len(HIDDEN_BELOW)}, got {self.n_tests}")
        if not 0 <= self.sloppy_rate <= 1:
            raise ValueError(f"code: sloppy_rate must be in [0, 1], got {self.sloppy_rate}")
        if self.style not in ("compact", "verbose"):
            raise ValueError(f"code: style must be 'compact' or 'verbose', got {self.style!r}")
        check_fractions("code", self.tune_fraction, self.heldout_fraction)
        self._members = {f: [fn for fn in all_functions() if fn.family == f] for f in self.families}
        self._members = {f: fns for f, fns in self._members.items() if fns and self._weights[f] > 0}
        self._total = sum(self._weights[f] for f in self._members)
        self._reward = None

    # ------------------------------------------------------------------ splits

    def split_of(self, fn: Function) -> str:
        """The split ("train", "tune" or "test") of a function: a hash of its canonical form."""
        return split_of(fn.key, self.tune_fraction, self.heldout_fraction)

    def canonical(self, record: dict) -> str:
        """The canonical form of a record's function: its values on PROBES."""
        return record["function"]

    def split_problems(self, split: str) -> list[tuple[Function, float]]:
        """Every function of a split with its (unnormalised) probability under the generator."""
        check_split(split)
        return [
            (fn, self._weights[family] / self._total / len(fns))
            for family, fns in self._members.items()
            for fn in fns
            if self.split_of(fn) == split
        ]

    # ------------------------------------------------------------------ records

    def _record(self, fn: Function, rng: random.Random) -> dict:
        completion = fn.expression
        if fn.near_misses and rng.random() < self.sloppy_rate:
            completion = rng.choice(fn.near_misses)
        text = _prompt_text(fn, self.style)
        tests = [[f"f({x})", fn(x)] for x in hidden_inputs(fn, self.n_tests)]
        return {
            "prompt": [{"role": "user", "content": text}] if self.chat else text,
            "answer": fn.expression,
            "completion": completion,
            "tests": tests,
            "examples": [[x, fn(x)] for x in SHOWN_INPUTS],
            "family": fn.family,
            "function": fn.key,
        }

    def generate(self, n: int, seed: int, split: str = "train") -> list[dict]:
        """n records {"prompt", "answer", "completion", "tests", "examples", "family", "function"} from a
        split. "tests" are the hidden tests, [call, expected] pairs; "function" is the canonical form.

        Training records repeat functions as the generator draws them; a tune or test set holds n distinct
        functions (all of the split, with a warning, when it has fewer).
        """
        check_split(split)
        rng = random.Random(f"code-{split}-{seed}")
        pool = self.split_problems(split)
        if not pool:
            raise ValueError(f"code: the {split} split holds no function with these families; add families")
        if split in EVAL_SPLITS:
            return [self._record(fn, rng) for fn in sample_without_replacement(pool, n, rng, f"the code {split} split")]
        families = list(self._members)
        records = []
        while len(records) < n:
            family = rng.choices(families, weights=[self._weights[f] for f in families])[0]
            fn = rng.choice(self._members[family])
            if self.split_of(fn) == split:
                records.append(self._record(fn, rng))
        return records

    def reward_functions(self) -> list:
        if self._reward is None:
            self._reward = code_task_reward if self.sandbox == "auto" else make_code_task_reward(self.sandbox)
        return [self._reward]

    def verify(self, completion: str, record: dict) -> bool:
        return self.reward_functions()[0]([completion], [record["tests"]])[0] == 1.0
