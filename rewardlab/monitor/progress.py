"""Progress bars for long loops and a plain-text table for end-of-run summaries."""

from __future__ import annotations

import math
import numbers
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from tqdm import tqdm


def progress(total: int | None, desc: str, disable: bool | None = None, **kwargs: Any) -> tqdm:
    """A tqdm bar on stderr. It is shown unless ``disable=True`` (also when stderr is not a terminal,
    so logs of batch jobs still show progress)."""
    return tqdm(total=total, desc=desc, disable=disable is True, file=sys.stderr, dynamic_ncols=True, **kwargs)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, numbers.Number):
        return str(value)
    if isinstance(value, numbers.Integral):
        return str(int(value))
    value = float(value)
    if math.isnan(value) or math.isinf(value):
        return str(value)
    if value == 0 or 1e-3 <= abs(value) < 1e5:
        return f"{value:.4g}" if abs(value) < 1e4 else f"{value:.0f}"
    return f"{value:.3e}"


def format_table(rows: Sequence[Mapping[str, Any]] | Sequence[Sequence[Any]], headers: Sequence[str] | None = None) -> str:
    """An aligned plain-text table: numbers right-aligned (4 significant digits), text left-aligned.

    Dict rows take their columns from `headers`, or from the keys in first-seen order; a missing key
    leaves the cell empty. List rows need `headers` of the same length.

    >>> print(format_table([{"method": "grpo", "accuracy": 0.8125}, {"method": "dpo", "accuracy": 0.5}]))
    method  accuracy
    ------  --------
    grpo      0.8125
    dpo          0.5
    """
    rows = list(rows)
    if rows and all(isinstance(row, Mapping) for row in rows):
        if headers is None:
            headers = list(dict.fromkeys(key for row in rows for key in row))
        values = [[row.get(h) for h in headers] for row in rows]
    else:
        if headers is None:
            raise ValueError("format_table: list rows need headers=[...] naming the columns.")
        values = []
        for index, row in enumerate(rows):
            if isinstance(row, Mapping) or len(row) != len(headers):
                raise ValueError(
                    f"format_table: row {index} has {len(row)} cells but there are {len(headers)} headers; "
                    "give every row one value per header (and do not mix dict and list rows)."
                )
            values.append(list(row))
    headers = [str(h) for h in headers]
    cells = [[_cell(v) for v in row] for row in values]
    numeric = [
        all(isinstance(row[i], numbers.Number) and not isinstance(row[i], bool) for row in values if row[i] is not None)
        for i in range(len(headers))
    ]
    widths = [max([len(h)] + [len(row[i]) for row in cells]) for i, h in enumerate(headers)]

    def line(parts: list[str], align_numbers: bool) -> str:
        padded = [
            part.rjust(width) if align_numbers and is_number else part.ljust(width)
            for part, width, is_number in zip(parts, widths, numeric)
        ]
        return "  ".join(padded).rstrip()

    out = [line(headers, align_numbers=True), line(["-" * w for w in widths], align_numbers=False)]
    out.extend(line(row, align_numbers=True) for row in cells)
    return "\n".join(out)
