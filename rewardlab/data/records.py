"""Loading records from files or memory, and checking them against the record schemas.

    prompt records      {"prompt": str | chat, ...extra columns the reward functions read}
    preference records  {"prompt": str | chat, "chosen": str | chat, "rejected": str | chat, "margin"?: number}
    unpaired records    {"prompt": str | chat, "completion": str | chat, "label": bool}
    SFT records         {"prompt", "completion"}, {"messages": chat} or {"text": str} (TRL's three formats)

A chat is a non-empty list of messages ``{"role": "system" | "user" | "assistant" | "tool",
"content": str}``. Rows are counted from 0 in every error message.
"""

from __future__ import annotations

import json
import math
import numbers
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

ROLES = ("system", "user", "assistant", "tool")
SUFFIXES = (".jsonl", ".json", ".parquet")


class DataError(ValueError):
    """Records that cannot be used. The message names the source, the row and the field."""


def load_records(source: Any) -> list[dict]:
    """Records as a list of dicts, from a .jsonl / .json / .parquet path, a `datasets.Dataset` or
    `IterableDataset`, a list of dicts, or the InMemoryData a config holds for data passed from Python.

    A .json file must hold a list of objects; a .jsonl file one object per line (blank lines skipped).
    """
    from .sources import InMemoryData, as_source, parse_description

    if isinstance(source, InMemoryData):  # rows passed from Python (shallow copies: a trainer may add keys)
        return [dict(row) for row in source.records]
    if isinstance(source, str) and parse_description(source) and not Path(source).exists():
        raise DataError(
            f"dataset {source} is the description a run's config.yaml records for data passed from Python; the rows "
            "are not in it. Pass the same data again: rewardlab.train(method, config, dataset=..., eval_dataset=...)."
        )
    if isinstance(source, (str, Path)):
        return _load_file(Path(source))
    if _is_hf_dataset_dict(source):
        splits = ", ".join(source.keys())
        raise DataError(
            f"got a DatasetDict with splits {splits}; pass one split, e.g. dataset['train']."
        )
    if _is_hf_dataset(source):
        return [dict(row) for row in source.to_list()]
    if _is_hf_dataset(source, "IterableDataset"):
        return as_source(source).records
    if isinstance(source, Sequence) and not isinstance(source, (str, bytes)):
        records = []
        for index, row in enumerate(source):
            if not isinstance(row, Mapping):
                raise DataError(
                    f"item {index} of the record list is a {type(row).__name__}, not a dict; "
                    "every record must be a dict such as {'prompt': ...}."
                )
            records.append(dict(row))
        return records
    raise DataError(
        f"cannot load records from a {type(source).__name__}; pass a path to a "
        f"{'/'.join(SUFFIXES)} file, a datasets.Dataset, or a list of dicts."
    )


def _is_hf_dataset(source: Any, name: str = "Dataset") -> bool:
    datasets = sys.modules.get("datasets")  # a Dataset cannot exist unless the library was imported
    return datasets is not None and isinstance(source, getattr(datasets, name))


def _is_hf_dataset_dict(source: Any) -> bool:
    return _is_hf_dataset(source, "DatasetDict") or _is_hf_dataset(source, "IterableDatasetDict")


def _load_file(path: Path) -> list[dict]:
    if not path.exists():
        raise DataError(f"data file {path} does not exist; check the path (relative paths start at {Path.cwd()}).")
    if path.is_dir():
        raise DataError(f"{path} is a directory; pass the {'/'.join(SUFFIXES)} file inside it.")
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        return _load_jsonl(path)
    if suffix == ".json":
        return _load_json(path)
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            return pq.read_table(path).to_pylist()
        except Exception as exc:
            raise DataError(f"could not read parquet file {path}: {exc}") from exc
    raise DataError(f"{path} has the unsupported suffix {suffix!r}; use one of {', '.join(SUFFIXES)}.")


def _load_jsonl(path: Path) -> list[dict]:
    records = []
    with path.open("rb") as handle:  # split on b"\n" only, and decode each line, so errors name their line
        for line_number, raw in enumerate(handle, start=1):
            line = _decode(raw[3:] if line_number == 1 and raw.startswith(_BOM) else raw, path, line_number)
            if not line.strip():
                continue
            row = _parse_json(line, path, line_number, "; each line of a .jsonl file must be one complete JSON object")
            if not isinstance(row, dict):
                raise DataError(
                    f"{path}:{line_number}: the line is a JSON {_json_type(row)}, not an object; each line "
                    "must be an object such as {\"prompt\": ...}."
                )
            records.append(row)
    return records


def _load_json(path: Path) -> list[dict]:
    raw = path.read_bytes()
    text = _decode(raw[3:] if raw.startswith(_BOM) else raw, path, None)
    data = _parse_json(text, path, None, "")
    if isinstance(data, dict):
        raise DataError(
            f"{path} holds a JSON object; it must hold a list of records ([{{...}}, ...]). "
            "For one record per line use a .jsonl file."
        )
    if not isinstance(data, list):
        raise DataError(f"{path} holds a JSON {_json_type(data)}; it must hold a list of objects.")
    for index, row in enumerate(data):
        if not isinstance(row, dict):
            raise DataError(
                f"item {index} of {path} is a JSON {_json_type(row)}, not an object; every record must be "
                "an object such as {\"prompt\": ...}."
            )
    return data


_BOM = b"\xef\xbb\xbf"  # the UTF-8 byte-order mark some editors write at the start of a file


def _decode(raw: bytes, path: Path, line_number: int | None) -> str:
    """`raw` (one line, or with line_number None a whole file) as text; DataError names where it is not UTF-8."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        start = raw.rfind(b"\n", 0, exc.start) + 1
        line = line_number if line_number is not None else raw.count(b"\n", 0, exc.start) + 1
        raise DataError(
            f"{path}:{line}: not UTF-8 text (byte {raw[exc.start:exc.start + 1]!r} at column {exc.start - start + 1}); "
            "save the file as UTF-8."
        ) from None


def _parse_json(text: str, path: Path, line_number: int | None, hint: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        line = line_number if line_number is not None else exc.lineno
        raise DataError(f"{path}:{line}: invalid JSON ({exc.msg} at column {exc.colno}){hint}.") from exc
    except (RecursionError, ValueError) as exc:  # nested deeper than the parser's stack; a number too long
        where = f"{path}:{line_number}" if line_number is not None else str(path)
        raise DataError(f"{where}: cannot read this JSON ({type(exc).__name__}: {str(exc)[:80]}).") from None


def _json_type(value: Any) -> str:
    return {list: "array", str: "string", int: "number", float: "number", bool: "boolean"}.get(
        type(value), "null" if value is None else type(value).__name__
    )


# ---------------------------------------------------------------------------------------------- checks


def _where(source: str, row: int) -> str:
    return f"row {row} of {source}"


def _check_rows(records: Any, source: str) -> None:
    if not isinstance(records, Sequence) or isinstance(records, (str, bytes)):
        raise DataError(f"{source}: expected a list of records, got a {type(records).__name__}; use load_records().")
    if not records:
        raise DataError(f"{source} has no records; check that the file or split is not empty.")
    for row, record in enumerate(records):
        if not isinstance(record, Mapping):
            raise DataError(f"{_where(source, row)} is a {type(record).__name__}, not a dict.")


def _check_chat(messages: Any, source: str, row: int, field: str) -> None:
    """`messages` is a non-empty list of {"role": one of ROLES, "content": str}."""
    where = _where(source, row)
    if not messages:
        raise DataError(f"{where}: {field!r} is an empty list; a chat needs at least one message.")
    for index, message in enumerate(messages):
        label = f"{where}: {field}[{index}]"
        if not isinstance(message, Mapping):
            raise DataError(
                f"{label} is a {type(message).__name__}; each message must be a dict "
                "{'role': ..., 'content': ...}."
            )
        role = message.get("role")
        if role not in ROLES:
            raise DataError(f"{label} has role {role!r}; use one of {', '.join(ROLES)}.")
        content = message.get("content")
        if not isinstance(content, str):
            raise DataError(
                f"{label} has {type(content).__name__} content; message content must be a string "
                "(multimodal content lists are not supported)."
            )


def _kind(value: Any) -> str:
    """'text', 'chat' or 'other'."""
    if isinstance(value, str):
        return "text"
    if isinstance(value, list):
        return "chat"
    return "other"


def _check_text_or_chat(value: Any, source: str, row: int, field: str, allow_empty_text: bool = False) -> str:
    kind = _kind(value)
    if kind == "text":
        if not allow_empty_text and not value.strip():
            raise DataError(f"{_where(source, row)}: {field!r} is an empty string; give it some text or drop the row.")
    elif kind == "chat":
        _check_chat(value, source, row, field)
    else:
        raise DataError(
            f"{_where(source, row)}: {field!r} is a {type(value).__name__}; it must be a string or a list "
            "of chat messages [{'role': 'user', 'content': ...}]."
        )
    return kind


def _require(record: Mapping, fields: Iterable[str], source: str, row: int, reasons: Mapping[str, str]) -> None:
    for field in fields:
        missing = field not in record
        if missing or (record[field] is None and field != "label"):
            have = ", ".join(map(repr, record)) or "none"
            why = f"; {reasons[field]} needs it" if field in reasons else ""
            what = f"has no {field!r} field" if missing else f"has {field!r} = null"
            raise DataError(
                f"{_where(source, row)} {what}{why}. Fields present: {have}. Give every row a {field!r} "
                "value, rename the column that holds it, or drop the row."
            )


def validate_prompt_records(
    records: Sequence[Mapping],
    required: Sequence[str] = ("prompt",),
    source: str = "<records>",
    reasons: Mapping[str, str] | None = None,
) -> None:
    """Raise DataError unless every record has the `required` fields and a usable prompt.

    `reasons` maps a field to who needs it (e.g. ``{"answer": "the reward function math"}``), which the
    error message repeats so the user knows why the field matters.
    """
    reasons = dict(reasons or {})
    required = tuple(dict.fromkeys(("prompt", *required)))
    _check_rows(records, source)
    for row, record in enumerate(records):
        _require(record, required, source, row, reasons)
        _check_text_or_chat(record["prompt"], source, row, "prompt")


def validate_sft_records(
    records: Sequence[Mapping], source: str = "<records>", text_field: str = "text", assistant_only_loss: bool = False
) -> str:
    """Raise DataError unless every record is in one of TRL's SFT formats, the same for all; return it.

        "prompt_completion"  {"prompt": str | chat, "completion": str | chat}   (loss on the completion)
        "messages"           {"messages": chat}        (conversational language modelling)
        "text"               {text_field: str}         (language modelling: loss on every token)

    The first row decides, as in TRL: a 'prompt' field makes it prompt-completion, else 'messages', else
    the text field. With assistant_only_loss, every conversation needs an assistant message.
    """
    _check_rows(records, source)
    first = records[0]
    if "prompt" in first or ("messages" not in first and text_field not in first and "completion" in first):
        kind = "prompt_completion"
    elif "messages" in first:
        kind = "messages"
    elif text_field in first:
        kind = "text"
    else:
        have = ", ".join(map(repr, first)) or "none"
        raise DataError(
            f"{_where(source, 0)} is in none of the SFT formats: it needs 'prompt' and 'completion' "
            f"(prompt-completion), 'messages' (a conversation) or {text_field!r} (plain text). Fields present: {have}."
        )
    if assistant_only_loss and kind != "messages":
        raise DataError(
            f"{source} holds {kind.replace('_', '-')} rows; assistant_only_loss applies to conversations "
            "({'messages': [...]}) only. Set it to false (prompt-completion rows train on the completion alone)."
        )
    if kind == "prompt_completion":
        validate_prompt_records(records, required=("prompt", "completion"), source=source,
                                reasons={"completion": "SFT on prompt-completion rows"})
        for row, record in enumerate(records):
            prompt_kind = _kind(record["prompt"])
            completion_kind = _check_text_or_chat(record["completion"], source, row, "completion", allow_empty_text=True)
            if prompt_kind != completion_kind:
                raise DataError(
                    f"{_where(source, row)}: 'prompt' is {prompt_kind} but 'completion' is {completion_kind}; "
                    "use the same format (both strings or both chat lists)."
                )
        return kind
    field = "messages" if kind == "messages" else text_field
    reasons = {field: f"SFT on {'conversations' if kind == 'messages' else 'plain text'} (the format of row 0)"}
    for row, record in enumerate(records):
        _require(record, (field,), source, row, reasons)
        value = record[field]
        if kind == "text":
            if not isinstance(value, str):
                raise DataError(f"{_where(source, row)}: {field!r} is a {type(value).__name__}; it must be a string.")
            _check_text_or_chat(value, source, row, field)
            continue
        if not isinstance(value, list):
            raise DataError(
                f"{_where(source, row)}: 'messages' is a {type(value).__name__}; it must be a list of chat "
                "messages [{'role': 'user', 'content': ...}, {'role': 'assistant', 'content': ...}]."
            )
        _check_chat(value, source, row, field)
        if assistant_only_loss and not any(m["role"] == "assistant" for m in value):
            raise DataError(
                f"{_where(source, row)}: 'messages' has no assistant message, so with assistant_only_loss it has "
                "nothing to train on; drop the row or add the assistant's reply."
            )
    return kind


def validate_preference_records(records: Sequence[Mapping], source: str = "<records>") -> None:
    """Raise DataError unless every record is a usable {prompt, chosen, rejected} preference pair.

    Text form: all three are strings. Chat form: chosen and rejected are chats ending in an assistant
    message; the prompt is a chat too, or is omitted when chosen/rejected hold the whole conversation.
    """
    _check_rows(records, source)
    for row, record in enumerate(records):
        where = _where(source, row)
        _require(record, ("chosen", "rejected"), source, row, {})
        margin = record.get("margin")
        if margin is not None and (isinstance(margin, bool) or not isinstance(margin, numbers.Real)
                                   or not math.isfinite(margin)):
            raise DataError(
                f"{where}: 'margin' is {margin!r} ({type(margin).__name__}); it must be a finite number (how far "
                "'chosen' is ahead of 'rejected'), or absent."
            )
        chosen_kind = _check_text_or_chat(record["chosen"], source, row, "chosen")
        rejected_kind = _check_text_or_chat(record["rejected"], source, row, "rejected")
        if chosen_kind != rejected_kind:
            raise DataError(
                f"{where}: 'chosen' is {chosen_kind} but 'rejected' is {rejected_kind}; "
                "use the same format (both strings or both chat lists)."
            )
        has_prompt = record.get("prompt") is not None
        if chosen_kind == "text":
            if not has_prompt:
                raise DataError(
                    f"{where} has no 'prompt' field; text-form preference pairs need a prompt string "
                    "(only chat-form pairs may carry the prompt inside 'chosen'/'rejected')."
                )
            if _check_text_or_chat(record["prompt"], source, row, "prompt") != "text":
                raise DataError(f"{where}: 'prompt' is a chat but 'chosen'/'rejected' are strings; use one format.")
            continue
        for field in ("chosen", "rejected"):
            if record[field][-1]["role"] != "assistant":
                raise DataError(
                    f"{where}: the last message of {field!r} has role {record[field][-1]['role']!r}; "
                    "it must be the assistant reply being judged."
                )
        if has_prompt:
            if _check_text_or_chat(record["prompt"], source, row, "prompt") != "chat":
                raise DataError(f"{where}: 'prompt' is a string but 'chosen'/'rejected' are chats; use one format.")
        elif all(m["role"] == "assistant" for m in record["chosen"]):
            raise DataError(
                f"{where} has no 'prompt' and 'chosen' holds only assistant messages; add a 'prompt' chat or "
                "put the user turn(s) at the start of 'chosen' and 'rejected'."
            )
        else:  # the prompt is the opening that 'chosen' has before its closing assistant messages
            opening = len(record["chosen"])
            while record["chosen"][opening - 1]["role"] == "assistant":
                opening -= 1
            if list(record["chosen"][:opening]) != list(record["rejected"][:opening]):
                raise DataError(
                    f"{where} has no 'prompt', and 'chosen' and 'rejected' do not open with the same messages "
                    f"(the first {opening} of 'chosen', which would be the prompt); add a 'prompt' chat."
                )
            after = [m["role"] for m in record["rejected"][opening:] if m["role"] != "assistant"]
            if after:
                raise DataError(
                    f"{where} has no 'prompt', and after the {opening} opening message(s) it shares with 'chosen', "
                    f"'rejected' has a {after[0]!r} message; the reply being judged must be assistant messages only. "
                    "Add a 'prompt' chat."
                )


def validate_unpaired_records(records: Sequence[Mapping], source: str = "<records>") -> None:
    """Raise DataError unless every record is {prompt, completion, label: bool} (KTO-style data)."""
    _check_rows(records, source)
    for row, record in enumerate(records):
        where = _where(source, row)
        _require(record, ("prompt", "completion", "label"), source, row, {})
        prompt_kind = _check_text_or_chat(record["prompt"], source, row, "prompt")
        completion_kind = _check_text_or_chat(record["completion"], source, row, "completion")
        if prompt_kind != completion_kind:
            raise DataError(
                f"{where}: 'prompt' is {prompt_kind} but 'completion' is {completion_kind}; "
                "use the same format (both strings or both chat lists)."
            )
        label = record["label"]
        if not (isinstance(label, bool) or type(label).__name__ == "bool_"):  # numpy.bool_ from parquet/pandas
            raise DataError(
                f"{where}: 'label' is {label!r} ({type(label).__name__}); it must be true (desirable) or "
                "false (undesirable)."
            )


def columns(records: Sequence[Mapping], exclude: Sequence[str] = ("prompt",)) -> dict[str, list]:
    """The dataset columns handed to reward functions as keyword arguments, one list per field.

    Fields are taken in first-seen order; a row missing a field contributes None.

    >>> columns([{"prompt": "1+1=", "answer": "2"}, {"prompt": "2+2=", "answer": "4"}])
    {'answer': ['2', '4']}
    """
    names: dict[str, None] = {}
    for record in records:
        for key in record:
            if key not in exclude:
                names.setdefault(key)
    return {name: [record.get(name) for record in records] for name in names}
