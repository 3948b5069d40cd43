"""Data passed from Python (a `datasets.Dataset`, a `DatasetDict`, an `IterableDataset` or a list of dicts)
standing in for a file path in a config.

    as_source(ds, "dataset")  ->  InMemoryData("<datasets.Dataset: 1000 rows, columns prompt, completion;
                                                 fingerprint 3f2a9c0b1d4e5f60>")

An `InMemoryData` is a `str` whose text describes the data (what a run's config.yaml records instead of
the rows) and which carries the rows (`.records`) and their fingerprint: the first 16 hex digits of the
SHA-256 of the rows written as JSON, one per line, keys sorted. The same rows give the same fingerprint in
every process, so a resumed run can check that it was handed the data it started with.

A DatasetDict gives one split: "train" for `dataset`, "test" (else "validation") for `eval_dataset`; for
another split pass it directly (`dataset=dd["other"]`). An IterableDataset is read once, at the start, up
to MAX_STREAMED_ROWS rows.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import yaml

from .records import DataError

MAX_STREAMED_ROWS = 1_000_000
SPLITS = {"dataset": ("train",), "eval_dataset": ("test", "validation")}
_DESCRIPTION = re.compile(r"^<(?P<kind>[^:>]+): .*; fingerprint (?P<fingerprint>[0-9a-f]+)>$", re.S)


class InMemoryData(str):
    """Rows handed over from Python, in a config's dataset / eval_dataset field: the text is the description
    config.yaml records, `.records` the rows, `.fingerprint` their content hash."""

    records: list[dict]
    fingerprint: str

    def __new__(cls, description: str, records: list[dict], fingerprint: str) -> InMemoryData:
        self = super().__new__(cls, description)
        self.records, self.fingerprint = records, fingerprint
        return self

    def __reduce__(self):
        return InMemoryData, (str(self), self.records, self.fingerprint)

    def __copy__(self) -> InMemoryData:
        return self

    def __deepcopy__(self, memo: dict) -> InMemoryData:  # the rows are never modified: share them
        return self


# a config holding one is written to config.yaml as its description
yaml.add_representer(InMemoryData, lambda dumper, data: dumper.represent_str(str(data)), Dumper=yaml.SafeDumper)


def is_path_like(value: Any) -> bool:
    from pathlib import PurePath

    return isinstance(value, (str, PurePath))


def _datasets_class(name: str):
    datasets = sys.modules.get("datasets")  # such an object cannot exist unless the library was imported
    return getattr(datasets, name, None) if datasets is not None else None


def _isinstance(value: Any, name: str) -> bool:
    cls = _datasets_class(name)
    return cls is not None and isinstance(value, cls)


def fingerprint(records: Sequence[Mapping]) -> str:
    """The first 16 hex digits of the SHA-256 of the rows as JSON lines (keys sorted)."""
    digest = hashlib.sha256()
    for record in records:
        digest.update(json.dumps(record, sort_keys=True, ensure_ascii=False, default=repr).encode("utf-8"))
        digest.update(b"\n")
    return digest.hexdigest()[:16]


def _column_names(records: Sequence[Mapping], given: Sequence[str] | None) -> list[str]:
    if given:
        return list(given)
    names: dict[str, None] = {}
    for record in records:
        names.update(dict.fromkeys(map(str, record)))
    return list(names)


def _rows_of_list(value: Sequence, role: str) -> list[dict]:
    rows = []
    for index, row in enumerate(value):
        if not isinstance(row, Mapping):
            raise DataError(
                f"{role}: item {index} of the list is a {type(row).__name__}, not a dict; every record must be a "
                "dict such as {'prompt': ...}."
            )
        rows.append(dict(row))
    return rows


def _pick_split(value: Any, role: str) -> tuple[Any, str]:
    splits = list(value.keys())
    for name in SPLITS[role]:
        if name in value:
            return value[name], name
    wanted = " or ".join(repr(s) for s in SPLITS[role])
    raise DataError(
        f"{role}: the DatasetDict has the splits {', '.join(map(repr, splits)) or 'none'} but no {wanted}, the "
        f"split {role} takes from a DatasetDict; pass the split you mean, e.g. {role}=dd[{splits[0]!r}]"
        if splits else f"{role}: the DatasetDict has no splits"
    )


def as_source(value: Any, role: str = "dataset") -> Any:
    """`value` ready for a config's `role` field ("dataset" or "eval_dataset"): a path (str or Path) as text,
    an InMemoryData unchanged, and a Dataset / DatasetDict / IterableDataset / list of dicts as an
    InMemoryData. Anything else is a DataError naming what can be passed."""
    if value is None:
        return ""
    if isinstance(value, InMemoryData):
        return value
    if is_path_like(value):
        return str(value)
    kind, columns, split = "", None, ""
    if _isinstance(value, "DatasetDict") or _isinstance(value, "IterableDatasetDict"):
        value, split = _pick_split(value, role)
        kind = f"datasets.{'Iterable' if _isinstance(value, 'IterableDataset') else ''}DatasetDict[{split!r}]"
    if _isinstance(value, "Dataset"):
        kind = kind or "datasets.Dataset"
        columns = value.column_names
        rows = [dict(row) for row in value.to_list()]
    elif _isinstance(value, "IterableDataset"):
        kind = kind or "datasets.IterableDataset"
        columns = value.column_names
        rows = [dict(row) for row in itertools.islice(iter(value), MAX_STREAMED_ROWS + 1)]
        if len(rows) > MAX_STREAMED_ROWS:
            raise DataError(
                f"{role}: the IterableDataset has more than {MAX_STREAMED_ROWS:,} rows; rewardlab reads its data into "
                "memory before training (to shuffle it and to check every row first). Pass a finite part, e.g. "
                f"{role}=ds.take(100_000)."
            )
    elif isinstance(value, Sequence) and not isinstance(value, (bytes, bytearray)):
        kind = "list"
        rows = _rows_of_list(value, role)
    else:
        raise DataError(
            f"{role} is a {type(value).__module__}.{type(value).__name__}; pass a path to a .jsonl/.json/.parquet "
            "file, a datasets.Dataset, a DatasetDict (its 'train' split for dataset, 'test' or 'validation' for "
            "eval_dataset), an IterableDataset, or a list of dicts."
        )
    digest = fingerprint(rows)
    names = _column_names(rows, columns)
    shown = ", ".join(names[:12]) + (f", ... ({len(names)} columns)" if len(names) > 12 else "")
    description = f"<{kind}: {len(rows)} rows, columns {shown or 'none'}; fingerprint {digest}>"
    return InMemoryData(description, rows, digest)


def parse_description(text: Any) -> tuple[str, str] | None:
    """(kind, fingerprint) of an in-memory data description as config.yaml records it, else None."""
    match = _DESCRIPTION.match(text) if isinstance(text, str) else None
    return (match["kind"], match["fingerprint"]) if match else None


def use_sources(cfg: Any) -> None:
    """A config's dataset / eval_dataset, when they hold Dataset objects or lists (a trainer called directly
    with such a config), replaced by their InMemoryData, before config.yaml is written."""
    for role in SPLITS:
        value = getattr(cfg, role, "")
        if not isinstance(value, str):
            setattr(cfg, role, as_source(value, role))


def check_resumed_data(cfg: Any) -> None:
    """A resumed run's data against what its config.yaml recorded: for data passed from Python the
    fingerprints must match (else DataError); where one side has no fingerprint (a file then, rows from
    Python now, or the reverse) a warning says that the data cannot be checked."""
    import logging
    from pathlib import Path

    if not getattr(cfg, "resume", False):
        return
    saved_file = Path(cfg.run_dir) / "config.yaml"
    if not saved_file.is_file():
        return
    from ..config import read_saved_config

    try:
        saved = read_saved_config(saved_file)
    except Exception:  # an unreadable config.yaml: the run directory's own checks report it
        return
    for role in SPLITS:
        now, before = getattr(cfg, role, "") or "", str(saved.get(role) or "")
        now_print = now.fingerprint if isinstance(now, InMemoryData) else None
        before_print = (parse_description(before) or (None, None))[1]
        if now_print is None and (before_print is None or str(now) == before):
            continue  # files or the task's data, as before; a description alone fails to load, saying why
        if now_print is not None and before_print is not None:
            if now_print != before_print:
                raise DataError(
                    f"resume: {role} is not the data this run started with: its config.yaml records {before}, and "
                    f"this call passed {now}. Resume with the same rows in the same order, or start afresh "
                    "(overwrite=True or another run_name)."
                )
            continue
        logging.getLogger(__name__).warning(
            "resume: cannot check that %s is the data this run started with: its config.yaml records %s and this "
            "call passed %s; only data passed from Python carries a fingerprint. Make sure the rows are the same.",
            role, before or "none (the task's data)", now or "none (the task's data)")
