"""The built-in `arithmetic` task: "a+b=" -> "c", a generator with difficulty knobs and a verifier.

Problems are split into train and held-out sets by a hash of the operands, so an evaluation on the
held-out split never sees a training problem, whatever the seeds.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass

OPS = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b}


def _is_heldout(a: int, op: str, b: int, heldout_fraction: float) -> bool:
    digest = hashlib.blake2b(f"{a}{op}{b}".encode(), digest_size=4).digest()
    return int.from_bytes(digest, "little") / 2**32 < heldout_fraction


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
    chat: prompts as chat messages [{"role": "user", "content": "12+34="}] instead of plain text.
    reverse_answer: write the answer least-significant digit first ("17+25=" -> "24"), the order in which
        digits and carries are worked out; small models learn it far faster.
    sloppy_carry_rate: the share of supervised demonstrations ("completion") written by a sloppy
        demonstrator who forgets every carry ("17+25=" -> "32"), as imperfect human or weak-model
        demonstrations would be. "answer", which the verifier checks, is always right. SFT imitates the
        demonstrator's mistakes; RL with the verifier can learn past them.
    """

    min_digits: int = 1
    max_digits: int = 2
    ops: tuple[str, ...] = ("+",)
    heldout_fraction: float = 0.2
    chat: bool = False
    reverse_answer: bool = False
    sloppy_carry_rate: float = 0.0

    name = "arithmetic"

    def __post_init__(self) -> None:
        if not 1 <= self.min_digits <= self.max_digits:
            raise ValueError(f"arithmetic: need 1 <= min_digits <= max_digits, got {self.min_digits}, {self.max_digits}")
        self.ops = tuple(self.ops)
        bad = [o for o in self.ops if o not in OPS]
        if bad or not self.ops:
            raise ValueError(f"arithmetic: unknown operator(s) {bad}; valid: {list(OPS)}")
        if not 0 <= self.sloppy_carry_rate <= 1:
            raise ValueError(f"arithmetic: sloppy_carry_rate must be in [0, 1], got {self.sloppy_carry_rate}")
        if not 0 < self.heldout_fraction < 1:
            raise ValueError(f"arithmetic: heldout_fraction must be in (0, 1), got {self.heldout_fraction}")

    def _operand(self, rng: random.Random) -> int:
        digits = rng.randint(self.min_digits, self.max_digits)
        low = 0 if digits == 1 else 10 ** (digits - 1)
        return rng.randint(low, 10**digits - 1)

    def generate(self, n: int, seed: int, split: str = "train") -> list[dict]:
        """n records {"prompt", "answer", "completion"} from the given split ("train" or "test")."""
        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        rng = random.Random(f"arithmetic-{split}-{seed}")
        records = []
        while len(records) < n:
            a, b, op = self._operand(rng), self._operand(rng), rng.choice(self.ops)
            if _is_heldout(a, op, b, self.heldout_fraction) != (split == "test"):
                continue
            text = f"{a}{op}{b}="
            answer = str(OPS[op](a, b))
            completion = answer
            if op == "+" and rng.random() < self.sloppy_carry_rate:
                completion = add_without_carry(a, b)
            if self.reverse_answer:
                answer, completion = answer[::-1], completion[::-1]
            prompt = [{"role": "user", "content": text}] if self.chat else text
            records.append({"prompt": prompt, "answer": answer, "completion": completion})
        return records

    def reward_functions(self) -> list:
        return [arithmetic_reward]

    def verify(self, completion: str, record: dict) -> bool:
        return arithmetic_reward([completion], [record["answer"]])[0] == 1.0
