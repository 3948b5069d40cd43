"""The built-in `preference` task: synthetic preference data labelled from a hidden, graded gold scorer.

A prompt is a few distinct letters followed by ":" ("qdk:"). The ideal reply uses each prompt letter once,
nothing else, in alphabetical order ("dkq"). The gold scorer counts how many of five properties a reply
has, so every completion gets a graded score, not just right or wrong:

    1-3. each prompt letter appears in the reply            (one point each)
    4.   the reply uses no character outside the prompt letters
    5.   the reply is in strictly increasing alphabetical order

Supervised demonstrations come from a *careless demonstrator* who drops prompt letters, adds stray ones
and often forgets to sort, so an SFT policy lands in a partly-good regime (gold around 3 of 5) with room
to improve. Preference pairs are two demonstrations of the same prompt with different gold scores,
labelled by a Bradley-Terry draw: the first is chosen with probability
sigmoid((gold(a) - gold(b)) / label_noise), so label_noise = 0 always prefers the better reply and larger
values flip more labels. Reward-model accuracy and policy improvement are then measured against the
gold scorer, the truth the labels were drawn from (Gao et al., arXiv 2210.10760).

Prompts are split into train, tune and test sets by a hash of their canonical form, the prompt's letters
sorted ("qdk:" and "kdq:" -> "dkq"): the ideal reply, and every gold score, depend on the set of letters
only, so a reordered prompt is the same problem and never crosses splits, whatever the seeds. Evaluation
sets hold distinct letter sets (rewardlab/tasks/splits.py).
"""

from __future__ import annotations

import itertools
import math
import random
import string
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

GOLD_MAX = 5.0


def prompt_letters(prompt: str | list[dict]) -> str:
    """The letters a prompt asks for ("qdk:" -> "qdk"; a chat prompt: its last message's content).

    >>> prompt_letters("qdk:"), prompt_letters([{"role": "user", "content": "qdk:"}])
    ('qdk', 'qdk')
    """
    text = prompt if isinstance(prompt, str) else prompt[-1]["content"]
    return text.strip().rstrip(":")


def gold_score(letters: str, completion: str) -> float:
    """How many of the five gold properties `completion` has for the prompt `letters` (0 to 5).

    >>> gold_score("qdk", "dkq"), gold_score("qdk", "kdq"), gold_score("qdk", "dkqx"), gold_score("qdk", "")
    (5.0, 4.0, 4.0, 0.0)
    >>> gold_score("qdk", "q"), gold_score("qdk", "xqd")  # 1 letter + only prompt letters + sorted; 2 letters
    (3.0, 2.0)
    """
    reply = completion.strip()
    score = float(sum(letter in reply for letter in letters))
    if reply and all(c in letters for c in reply):
        score += 1.0
    if reply and all(a < b for a, b in zip(reply, reply[1:])):
        score += 1.0
    return score


def gold_reward(prompts: list, completions: list, **kwargs) -> list[float]:
    """The gold score scaled to [0, 1] (gold / 5), with TRL's reward-function signature.

    >>> gold_reward(prompts=["qdk:", "qdk:"], completions=["dkq", "kd"])
    [1.0, 0.6]
    """
    texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
    return [gold_score(prompt_letters(p), t) / GOLD_MAX for p, t in zip(prompts, texts)]


def win_rate(policy_scores: list[float], reference_scores: list[float]) -> float:
    """Share of paired samples where the policy's gold score beats the reference's; a tie counts half.

    >>> win_rate([5, 3, 2, 4], [4, 3, 4, 1])
    0.625
    """
    if len(policy_scores) != len(reference_scores) or not policy_scores:
        raise ValueError(f"win_rate needs two equally long, non-empty score lists, got {len(policy_scores)} and {len(reference_scores)}")
    wins = sum(1.0 if p > r else 0.5 if p == r else 0.0 for p, r in zip(policy_scores, reference_scores))
    return wins / len(policy_scores)


def canonical_letters(letters: str) -> str:
    """A prompt's canonical form: its letters sorted (the ideal reply). "qdk" and "kdq" -> "dkq".

    >>> canonical_letters("qdk"), canonical_letters("kdq")
    ('dkq', 'dkq')
    """
    return "".join(sorted(letters))


MAX_LISTED = 200_000  # an evaluation split is listed (and sampled exactly) up to this many letter sets


@lru_cache(maxsize=32)
def _listed_split(alphabet: str, num_letters: int, tune_fraction: float, test_fraction: float, split: str) -> list[tuple[str, float]] | None:
    if math.comb(len(alphabet), num_letters) > MAX_LISTED:
        return None
    sets = ("".join(sorted(c)) for c in itertools.combinations(alphabet, num_letters))
    return [(key, 1.0) for key in sets if split_of(key, tune_fraction, test_fraction) == split]


@dataclass
class PreferenceTask:
    """Synthetic preferences with a hidden gold scorer (see the module docstring).

    num_letters: letters per prompt; alphabet: the letters prompts draw from.
    keep_prob: the demonstrator keeps each prompt letter with this probability.
    max_extra: the demonstrator adds 0..max_extra stray letters (uniformly many).
    sorted_prob: the demonstrator sorts its reply with this probability (otherwise shuffles it).
    label_noise: temperature of the Bradley-Terry draw that labels pairs (0: always the better reply).
    heldout_fraction: the share of letter sets in the test split; tune_fraction: in the tune split.
    chat: prompts and completions as chat messages instead of plain text.
    """

    num_letters: int = 3
    alphabet: str = string.ascii_lowercase
    keep_prob: float = 0.7
    max_extra: int = 2
    sorted_prob: float = 0.4
    label_noise: float = 0.5
    heldout_fraction: float = 0.2
    tune_fraction: float = 0.1
    chat: bool = False

    name = "preference"

    def __post_init__(self) -> None:
        if len(set(self.alphabet)) != len(self.alphabet) or not self.alphabet.isalpha():
            raise ValueError(f"preference: alphabet must be distinct letters, got {self.alphabet!r}")
        if not 1 <= self.num_letters <= len(self.alphabet) - self.max_extra:
            raise ValueError(
                f"preference: need 1 <= num_letters <= len(alphabet) - max_extra, got {self.num_letters} "
                f"with {len(self.alphabet)} letters and max_extra {self.max_extra}"
            )
        check_fractions("preference", self.tune_fraction, self.heldout_fraction)
        for name in ("keep_prob", "sorted_prob"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"preference: {name} must be in [0, 1], got {getattr(self, name)}")
        if self.label_noise < 0 or self.max_extra < 0:
            raise ValueError(f"preference: label_noise and max_extra must be >= 0, got {self.label_noise}, {self.max_extra}")

    # ------------------------------------------------------------------ drawing prompts and replies

    def split_of(self, letters: str) -> str:
        """The split ("train", "tune" or "test") of a prompt's letters: a hash of their canonical form."""
        return split_of(canonical_letters(letters), self.tune_fraction, self.heldout_fraction)

    def canonical(self, record: dict) -> str:
        """The canonical form of a record's prompt ("qdk:" -> "dkq")."""
        return canonical_letters(prompt_letters(record["prompt"]))

    def _letters(self, rng: random.Random, split: str) -> str:
        while True:
            letters = "".join(rng.sample(self.alphabet, self.num_letters))
            if self.split_of(letters) == split:
                return letters

    def _distinct_letters(self, n: int, rng: random.Random, split: str) -> list[str]:
        """n prompts' letters with distinct canonical forms from an evaluation split (all, with a warning,
        when it has fewer)."""
        what = f"the preference {split} split"
        pool = _listed_split(self.alphabet, self.num_letters, self.tune_fraction, self.heldout_fraction, split)
        if pool is not None:
            return ["".join(rng.sample(key, len(key))) for key in sample_without_replacement(pool, n, rng, what)]

        def draw():
            letters = "".join(rng.sample(self.alphabet, self.num_letters))
            return (canonical_letters(letters), letters) if self.split_of(letters) == split else None

        return draw_distinct(draw, n, what)

    def demonstrate(self, letters: str, rng: random.Random) -> str:
        """One careless demonstration: some prompt letters dropped, stray ones added, often unsorted."""
        while True:
            reply = [c for c in letters if rng.random() < self.keep_prob]
            strays = [c for c in self.alphabet if c not in letters]
            reply += rng.sample(strays, rng.randint(0, self.max_extra))
            if reply:
                break
        if rng.random() < self.sorted_prob:
            reply.sort()
        else:
            rng.shuffle(reply)
        return "".join(reply)

    def _prompt(self, letters: str) -> str | list[dict]:
        text = f"{letters}:"
        return [{"role": "user", "content": text}] if self.chat else text

    def _reply(self, text: str) -> str | list[dict]:
        return [{"role": "assistant", "content": text}] if self.chat else text

    def generate(self, n: int, seed: int, split: str = "train") -> list[dict]:
        """n supervised records {"prompt", "completion"} (careless demonstrations) from a split ("train",
        "tune" or "test"); a tune or test set holds n distinct letter sets (all of the split when fewer)."""
        check_split(split)
        rng = random.Random(f"preference-sft-{split}-{seed}")
        if split in EVAL_SPLITS:
            letter_list = self._distinct_letters(n, rng, split)
        else:
            letter_list = [self._letters(rng, split) for _ in range(n)]
        return [{"prompt": self._prompt(letters), "completion": self._reply(self.demonstrate(letters, rng))} for letters in letter_list]

    def preference_pairs(self, n: int, seed: int, split: str = "train") -> list[dict]:
        """n pairs {"prompt", "chosen", "rejected"}: two demonstrations with different gold scores,
        labelled by a Bradley-Terry draw at temperature label_noise. A tune or test set holds n distinct
        letter sets (all of the split, with a warning, when it has fewer)."""
        check_split(split)
        rng = random.Random(f"preference-pairs-{split}-{seed}")
        held_out = split in EVAL_SPLITS
        # a held-out set walks through distinct letter sets, trying each a few times for a pair that differs
        queue = self._distinct_letters(n, rng, split) if held_out else []
        records = []
        while len(records) < n:
            if held_out and not queue:
                break
            letters = queue.pop(0) if held_out else self._letters(rng, split)
            for _ in range(20 if held_out else 1):
                a, b = self.demonstrate(letters, rng), self.demonstrate(letters, rng)
                gap = gold_score(letters, a) - gold_score(letters, b)
                if gap != 0:
                    break
            if gap == 0:
                continue  # no preference to learn from; draw another prompt
            p_a = (1.0 if gap > 0 else 0.0) if self.label_noise == 0 else 1 / (1 + math.exp(-gap / self.label_noise))
            chosen, rejected = (a, b) if rng.random() < p_a else (b, a)
            records.append({"prompt": self._prompt(letters), "chosen": self._reply(chosen), "rejected": self._reply(rejected)})
        return records

    def unpaired(self, n: int, seed: int, split: str = "train") -> list[dict]:
        """n records {"prompt", "completion", "label"} for KTO: each pair's chosen reply labelled
        desirable and its rejected reply undesirable (n // 2 pairs, rounded up)."""
        rows = []
        for pair in self.preference_pairs((n + 1) // 2, seed, split):
            rows.append({"prompt": pair["prompt"], "completion": pair["chosen"], "label": True})
            rows.append({"prompt": pair["prompt"], "completion": pair["rejected"], "label": False})
        return rows[:n]

    # ------------------------------------------------------------------ scoring

    def gold(self, prompt: str | list[dict], completion: str | list[dict]) -> float:
        """The hidden gold score (0 to 5) of a completion for a prompt."""
        text = completion[-1]["content"] if isinstance(completion, list) else completion
        return gold_score(prompt_letters(prompt), text)

    def expected_label_accuracy(self, pairs: list[dict]) -> float:
        """The best accuracy any scorer can reach on these pairs' noisy labels: the mean over pairs of the
        chance that the label agrees with the gold order, sigmoid(|gold gap| / label_noise)."""
        total = 0.0
        for pair in pairs:
            gap = abs(self.gold(pair["prompt"], pair["chosen"]) - self.gold(pair["prompt"], pair["rejected"]))
            total += 1.0 if self.label_noise == 0 else 1 / (1 + math.exp(-gap / self.label_noise))
        return total / max(1, len(pairs))

    def reward_functions(self) -> list:
        return [gold_reward]

    def verify(self, completion: str, record: dict) -> bool:
        """True for a perfect reply (all five properties)."""
        return self.gold(record["prompt"], completion) == GOLD_MAX
