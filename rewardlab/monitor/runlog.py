"""Per-step metrics and samples written to the run directory: JSON lines first, TensorBoard if installed.

metrics.jsonl holds one object per logged step, ``{"step": 12, "loss": 0.31, ...}``, written in full
precision and flushed at once, so a crash loses nothing already logged. Non-finite values are written as
``null`` (strict JSON, readable by jq and pandas); `read_metrics` turns them back into NaN.
"""

from __future__ import annotations

import json
import logging
import math
import numbers
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

METRICS_FILE = "metrics.jsonl"
SAMPLES_FILE = "samples.jsonl"
SAMPLE_TEXT_LIMIT = 4000  # characters of each text field kept in samples.jsonl: a 10 MB prompt is not logged whole


def _bounded(value: Any) -> Any:
    """Long strings (in lists and chat messages too) cut to SAMPLE_TEXT_LIMIT, noting how much was left out."""
    if isinstance(value, str) and len(value) > SAMPLE_TEXT_LIMIT:
        half = SAMPLE_TEXT_LIMIT // 2
        return f"{value[:half]}...[{len(value) - 2 * half} characters not logged]...{value[-half:]}"
    if isinstance(value, dict):
        return {k: _bounded(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_bounded(v) for v in value]
    return value


def _scalar(value: Any) -> Any:
    """A JSON-ready Python value for a metric: tensors and numpy scalars become float/int."""
    if hasattr(value, "item") and getattr(value, "ndim", 0) == 0 and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, bool) or isinstance(value, str) or value is None:
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        value = float(value)
        return value if math.isfinite(value) else None
    return value


def _json_default(value: Any) -> Any:
    """Encoder fallback for sample rows: tensors/arrays to lists, anything else to its str()."""
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def _finite_or_none(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite_or_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite_or_none(v) for v in obj]
    return obj


class RunLogger:
    """Appends metrics and samples to ``run_dir`` and mirrors numeric metrics to TensorBoard.

    Args:
        run_dir: the run directory; created if missing.
        tensorboard: also write TensorBoard event files into ``run_dir`` when tensorboard is installed.
        resume_step: when resuming from a checkpoint at this step, first drop every logged line with a
            larger step, so the resumed run does not log those steps twice.
    """

    def __init__(self, run_dir: str | os.PathLike, tensorboard: bool = True, resume_step: int | None = None):
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.metrics_path = self.run_dir / METRICS_FILE
        self.samples_path = self.run_dir / SAMPLES_FILE
        if resume_step is not None:
            for path in (self.metrics_path, self.samples_path):
                _truncate_after(path, resume_step)
        self._metrics_file = self.metrics_path.open("a", encoding="utf-8")
        self._samples_file = None  # opened on the first log_samples call
        self._writer = _summary_writer(self.run_dir, resume_step) if tensorboard else None

    def log(self, step: int, metrics: Mapping[str, Any]) -> None:
        """Append ``{"step": step, **metrics}`` to metrics.jsonl; numeric values also go to TensorBoard."""
        if "step" in metrics:
            raise ValueError(
                f"RunLogger.log(step={step}): the metrics dict has its own 'step' key; pass the step only "
                "as the first argument, or rename that metric."
            )
        row: dict[str, Any] = {"step": int(step)}
        for key, value in metrics.items():
            converted = _scalar(value)
            if converted is not None and not isinstance(converted, (bool, int, float, str)):
                raise TypeError(
                    f"RunLogger.log(step={step}): metric {key!r} is a {type(value).__name__}; log a number "
                    "(or a 0-d tensor) per key."
                )
            row[str(key)] = converted
        self._metrics_file.write(json.dumps(row, allow_nan=False) + "\n")
        self._metrics_file.flush()
        if self._writer is not None:
            for key, value in row.items():
                if key != "step" and isinstance(value, (int, float)) and not isinstance(value, bool):
                    self._writer.add_scalar(key, value, global_step=int(step))
            self._writer.flush()

    def log_samples(self, step: int, rows: list[Mapping[str, Any]]) -> None:
        """Append each row as ``{"step": step, **row}`` to samples.jsonl (prompts, completions, rewards...)."""
        if self._samples_file is None:
            self._samples_file = self.samples_path.open("a", encoding="utf-8")
        for row in rows:
            record = _bounded(_finite_or_none({"step": int(step), **row}))
            self._samples_file.write(json.dumps(record, default=_json_default, ensure_ascii=False) + "\n")
        self._samples_file.flush()

    def close(self) -> None:
        for handle in (self._metrics_file, self._samples_file):
            if handle is not None and not handle.closed:
                handle.close()
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def __enter__(self) -> RunLogger:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _summary_writer(run_dir: Path, resume_step: int | None):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except Exception:  # ImportError without tensorboard; some builds fail with other errors
        logger.info("tensorboard is not installed; logging to %s only", run_dir / METRICS_FILE)
        return None
    # purge_step makes TensorBoard hide events a crashed run wrote past the resume point.
    purge_step = resume_step + 1 if resume_step is not None else None
    return SummaryWriter(log_dir=str(run_dir), purge_step=purge_step)


def _truncate_after(path: Path, resume_step: int) -> None:
    """Keep only the lines of `path` with step <= resume_step; rewrite via a temp file + os.replace."""
    if not path.exists():
        return
    kept, dropped = [], 0
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if not line.strip():
                continue
            try:
                step = json.loads(line).get("step")
            except (json.JSONDecodeError, AttributeError):
                step = None  # a line torn by a crash mid-write, or not an object
            if isinstance(step, int) and step <= resume_step:
                kept.append(line if line.endswith("\n") else line + "\n")
            else:
                dropped += 1
    if dropped:
        logger.info("resuming at step %d: dropped %d lines from %s", resume_step, dropped, path)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as tmp:
            tmp.writelines(kept)
            tmp.flush()
            os.fsync(tmp.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def read_metrics(run_dir: str | os.PathLike) -> list[dict]:
    """The rows of ``run_dir/metrics.jsonl`` (or of that file given directly); null values come back as NaN.

    A torn last line (the process died mid-write) is skipped; a bad line elsewhere raises ValueError.
    """
    path = Path(run_dir)
    if path.is_dir() or not path.suffix:
        path = path / METRICS_FILE
    if not path.exists():
        raise FileNotFoundError(f"no metrics file at {path}; is {path.parent} a run directory written by RunLogger?")
    lines = path.read_text(encoding="utf-8").splitlines()
    rows = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            if number == len(lines):
                logger.warning("%s:%d is incomplete (interrupted write?); skipped", path, number)
                continue
            raise ValueError(f"{path}:{number}: invalid JSON ({exc.msg}); the metrics file is corrupt.") from exc
        rows.append({k: (math.nan if v is None else v) for k, v in row.items()})
    return rows
