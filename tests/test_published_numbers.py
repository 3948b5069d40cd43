"""Every figure BENCHMARKS.md quotes comes from a results file a script in the repo wrote.

A figure is any number with a decimal point (accuracies, means, spreads, ratios, times in seconds with
decimals). Each must appear as a number, written the same way, in a file under benchmarks/results/
(so 58.2 is not found inside 158.25); a number that only
describes a setting (a learning rate, a KL coefficient) is written in the results file's header too,
since the scripts record their settings there.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIGURE = re.compile(r"(?<![\w.])\d+\.\d+(?!\w|\.\d)")  # a full stop after a figure ends a sentence


def figures(text: str) -> set[str]:
    """The decimal numbers of a text, outside code spans and links' targets.

    >>> sorted(figures("GRPO 58.2% (+24.0) vs `lr 0.5` in [x](results/a1.2.md), v1.16, sd 0.019."))
    ['0.019', '24.0', '58.2']
    """
    text = re.sub(r"`[^`]*`", " ", text)
    text = re.sub(r"\]\([^)]*\)", "]", text)
    text = re.sub(r"\bv\d+(\.\d+)+", " ", text)
    return set(FIGURE.findall(text))


def test_every_figure_in_benchmarks_md_is_in_a_results_file():
    written = set()
    for path in (ROOT / "benchmarks" / "results").iterdir():
        if path.suffix in (".md", ".json"):
            written |= set(FIGURE.findall(path.read_text()))
    missing = sorted(figures((ROOT / "BENCHMARKS.md").read_text()) - written)
    assert not missing, f"BENCHMARKS.md quotes figures no results file holds: {missing}"
