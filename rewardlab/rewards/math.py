"""Verifiable math rewards: pull the final answer out of a completion and compare it to the gold one.

Comparison goes through math_verify (symbolic: ``\\frac{1}{2}`` equals ``0.5``) with a plain numeric /
string comparison as the fallback when math_verify cannot parse an answer.
"""

from __future__ import annotations

import logging
import re
import threading
from fractions import Fraction
from typing import Any

logger = logging.getLogger(__name__)

# How long math_verify may spend parsing or comparing one answer. Its timeout uses signal.alarm, which
# only works in the main thread, so in other threads (e.g. a reward worker pool) it runs without one.
MATH_VERIFY_TIMEOUT_S = 5

_BOXED = re.compile(r"\\boxed\s*\{")
# A number not glued to a preceding word, digit or dot: -3, 1,234, 0.5, .5, 3/4, -2.5/7
_NUMBER = re.compile(r"(?<![\w.])-?(?:\d{1,3}(?:,\d{3})+|\d+)?(?:\.\d+)?(?:/\d+)?")


def _boxed_contents(text: str) -> list[str]:
    """Contents of every well-formed \\boxed{...} in order; braces nest, an unclosed one is skipped."""
    found = []
    for match in _BOXED.finditer(text):
        depth, start = 1, match.end()
        for position in range(start, len(text)):
            char = text[position]
            if char == "{":
                depth += 1
            elif char == "}":
                depth -= 1
                if depth == 0:
                    found.append(text[start:position].strip())
                    break
    return found


def extract_answer(text: str) -> str | None:
    """The final answer in `text`: the last \\boxed{...} (nested braces kept), else the last number.

    Thousands separators are dropped from a bare number; None when the text holds neither.

    >>> extract_answer(r"so x = \\boxed{\\frac{1}{2}}.")
    '\\\\frac{1}{2}'
    >>> extract_answer("first 3, then -4.5 and finally 3/4.")
    '3/4'
    >>> extract_answer("a total of 1,250 apples")
    '1250'
    >>> extract_answer("no digits here") is None
    True
    """
    boxed = _boxed_contents(text)
    if boxed:
        return boxed[-1]
    numbers = [m.group(0) for m in _NUMBER.finditer(text) if any(c.isdigit() for c in m.group(0))]
    if not numbers:
        return None
    return numbers[-1].replace(",", "")


def _as_number(text: str) -> Fraction | float | None:
    cleaned = text.strip().strip("$").replace(",", "").replace(" ", "").rstrip(".")
    cleaned = re.sub(r"^\\d?frac\{(-?[\d.]+)\}\{(-?[\d.]+)\}$", r"\1/\2", cleaned)
    try:
        if "/" in cleaned:
            numerator, denominator = cleaned.split("/")
            return Fraction(numerator) / Fraction(denominator)
        return Fraction(cleaned)
    except (ValueError, ZeroDivisionError):
        return None


def _decimal_places(text: str) -> int:
    """Digits written after the decimal point ("0.3333" -> 4, "12" -> 0)."""
    found = re.search(r"\.(\d+)", text)
    return len(found.group(1)) if found else 0


def _fallback_equal(pred: str, gold: str) -> bool:
    pred_number, gold_number = _as_number(pred), _as_number(gold)
    if pred_number is not None and gold_number is not None:
        if pred_number == gold_number:  # exact: 1000000001 is not 1000000000, however large the numbers
            return True
        # a decimal may round a fraction ("0.3333333333" for 1/3): close enough when the difference is below
        # its last written digit and within 1e-9 of the numbers' size (in exact arithmetic: no float overflow)
        places = max(_decimal_places(pred), _decimal_places(gold))
        difference = abs(pred_number - gold_number)
        return bool(places) and difference < Fraction(1, 10**places) and \
            difference <= Fraction(1, 10**9) * max(abs(pred_number), abs(gold_number))

    def normalize(s: str) -> str:
        return re.sub(r"\s+", "", s).strip("$").rstrip(".").lower()

    return bool(normalize(pred)) and normalize(pred) == normalize(gold)


def _math_verify_equal(pred: str, gold: str) -> bool | None:
    """math_verify's verdict, or None when it is unavailable or could not parse one side."""
    try:
        from math_verify import parse, verify
    except ImportError:  # pragma: no cover - math-verify is a dependency
        return None
    limit = MATH_VERIFY_TIMEOUT_S if threading.current_thread() is threading.main_thread() else None
    try:
        gold_parsed = parse(_as_latex(gold), parsing_timeout=limit)
        pred_parsed = parse(_as_latex(pred), parsing_timeout=limit)
        if not gold_parsed or not pred_parsed:
            return None
        return bool(verify(gold_parsed, pred_parsed, timeout_seconds=limit))
    except Exception:  # math_verify's own timeouts and parser failures: fall back, never crash training
        logger.debug("math_verify failed on pred=%r gold=%r", pred, gold, exc_info=True)
        return None


def _as_latex(answer: str) -> str:
    # math_verify finds answers inside $...$ / \boxed{}; a bare "\frac{1}{2}" needs delimiters to parse.
    return answer if "$" in answer or "\\boxed" in answer else f"${answer}$"


def math_equal(pred: str, gold: str) -> bool:
    """Whether two final answers are mathematically the same.

    >>> math_equal("\\\\frac{1}{2}", "0.5")
    True
    >>> math_equal("3/4", "0.75")
    True
    >>> math_equal("2", "3")
    False
    """
    pred, gold = str(pred).strip(), str(gold).strip()
    if not pred or not gold:
        return False
    if _math_verify_equal(pred, gold):
        return True
    return _fallback_equal(pred, gold)


def completion_text(completion: Any) -> str:
    """The text of a completion: a string as is, or the content of a chat list's last message."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list) and completion and isinstance(completion[-1], dict):
        return str(completion[-1].get("content") or "")
    raise TypeError(
        f"a completion must be a string or a list of chat messages, got {type(completion).__name__}"
    )


def math_reward(completions: list, answer: list, **kwargs: Any) -> list[float]:
    """1.0 where the completion's final answer equals the gold `answer` column, else 0.0.

    >>> math_reward(["... so \\\\boxed{12}", "I think 13"], answer=["12", "12"])
    [1.0, 0.0]
    >>> math_reward([[{"role": "assistant", "content": "It is 0.5"}]], answer=["\\\\frac{1}{2}"])
    [1.0]
    """
    if len(answer) != len(completions):
        raise ValueError(
            f"math_reward got {len(completions)} completions but {len(answer)} answers; "
            "the 'answer' column needs one value per completion."
        )
    rewards = []
    for completion, gold in zip(completions, answer):
        pred = extract_answer(completion_text(completion))
        rewards.append(1.0 if pred is not None and math_equal(pred, str(gold)) else 0.0)
    return rewards
