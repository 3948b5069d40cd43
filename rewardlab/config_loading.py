"""Loading typed dataclass configs: the machinery the language-model trainers (rewardlab/config.py) and the
classic algorithms (rewardlab/classic/config.py) share.

Nothing here knows a config class. A config is a dataclass whose fields carry type annotations and, under
each field, a docstring. Settings arrive from YAML files (`read_yaml_mapping`) and from `key=value`
overrides (`parse_overrides`, values read as YAML: `beta=0.04`, `reward_funcs=[math]`, `hidden_sizes=64,64`);
`convert_settings` checks every key against the class's fields (a typo names the closest fields) and
converts every value to its field's annotation (`convert`). Every mistake is a `ConfigError` (a ValueError)
whose message says which key, where it came from (the file, or "command line") and what to write instead:

    command line: unknown config key 'learnin_rate' for PPOConfig. Did you mean: learning_rate?
    c.yaml: total_steps must be int (a whole number, e.g. 100_000 or 1e5), got float 1.5
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import inspect
import json
import math
import numbers
import textwrap
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    """A bad config key or value. The message says which key, where it came from, and what to do."""


# ------------------------------------------------------------------------------------------ sources
def split_override(item: str) -> tuple[str, str]:
    """"beta=0.04" -> ("beta", "0.04"): the key (stripped) and the value text as written."""
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {item!r} is not key=value (e.g. learning_rate=1e-4)")
    return key.strip(), raw


def parse_value(item: str, raw: str) -> Any:
    """The value text of the override `item` read as YAML ("" when blank)."""
    try:
        return yaml.safe_load(raw) if raw.strip() else ""
    except (yaml.YAMLError, ValueError) as err:  # ValueError: an integer of more than 4300 digits
        raise ConfigError(f"override {item[:80]!r}: the value is not valid YAML ({' '.join(str(err).split())[:200]}); "
                          "quote it, e.g. key='value'") from None


def parse_overrides(overrides: Iterable[str], text_keys: Iterable[str] = ()) -> dict[str, Any]:
    """["beta=0.04", "reward_funcs=[math]"] -> {"beta": 0.04, "reward_funcs": ["math"]} (values read as YAML).

    The values of `text_keys` are taken as written, not read as YAML (classic's text options: `name=007`)."""
    text_keys = set(text_keys)
    parsed: dict[str, Any] = {}
    for item in overrides:
        key, raw = split_override(item)
        parsed[key] = raw if key in text_keys else parse_value(item, raw)
    return parsed


def read_yaml_mapping(path: str | Path) -> dict[Any, Any]:
    """A YAML config file as a mapping (an empty file is {}); a missing file, bad YAML or a top level that is
    not a mapping is a ConfigError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        with open(path) as fh:
            loaded = yaml.safe_load(fh) or {}
    except (yaml.YAMLError, UnicodeDecodeError, ValueError) as err:  # ValueError: an integer over 4300 digits
        raise ConfigError(f"{path} is not valid YAML: {' '.join(str(err).split())[:300]}") from None
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: expected a mapping of key: value at the top level")
    return loaded


# ------------------------------------------------------------------------------------------ fields
def config_fields(cls: type) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(cls)}


def field_types(cls: type) -> dict[str, Any]:
    """Each field's annotation, resolved (string annotations under `from __future__ import annotations` too)."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def field_docs(cls: type) -> dict[str, str]:
    """The docstring under each field (the string literal after it), read from the source of cls and of its
    dataclass bases; a subclass's docstring wins. Classes without source (defined interactively) are skipped."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            source = textwrap.dedent(inspect.getsource(klass))
        except (OSError, TypeError):
            continue
        body = ast.parse(source).body[0].body
        for node, after in zip(body, body[1:]):
            if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and isinstance(after, ast.Expr):
                if isinstance(after.value, ast.Constant) and isinstance(after.value.value, str):
                    docs[node.target.id] = " ".join(after.value.value.split())
    return docs


def check_keys(cls: type, keys: Iterable[Any], source: str) -> None:
    """Every key names a field of cls; else a ConfigError with the closest names (or all of them)."""
    valid = config_fields(cls)
    for key in keys:
        if not isinstance(key, str):
            raise ConfigError(f"{source}: config keys are names, got the {type(key).__name__} {key!r}")
        if key not in valid:
            close = difflib.get_close_matches(key, list(valid), n=3)
            hint = f" Did you mean: {', '.join(close)}?" if close else f" Valid keys: {', '.join(sorted(valid))}."
            raise ConfigError(f"{source}: unknown config key {key!r} for {cls.__name__}.{hint}")


def convert_settings(cls: type, items: Mapping[Any, Any], source: str) -> dict[str, Any]:
    """Settings from one source (a file, the command line), keys checked and values converted to their fields."""
    check_keys(cls, items, source)
    annotations = field_types(cls)
    return {key: convert(value, annotations[key], key, source) for key, value in items.items()}


# ------------------------------------------------------------------------------------------ values
class _Mismatch(Exception):
    """The value does not fit the annotation (turned into a ConfigError naming the field's type)."""


TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")


def convert(value: Any, annotation: Any, key: str, source: str) -> Any:
    """`value` (a YAML value, a Python value, or command-line text) as the field's annotated type:

    - bool: true/false (also yes/no, on/off, 1/0, as YAML or as text);
    - int: a whole number, also written 100_000, 1e5 or 1.0e5; float: any number (3e-4, an integer);
    - str: text only (YAML reads 007 and yes as a number and a boolean: quote them);
    - tuple[X, ...]: a list, or comma-separated text (64,64), or a single value;
    - list: a list, or a single value as a one-item list; dict: a mapping, or a JSON object as text;
    - X | None: null/none, or an X; Literal[...]: one of the listed values; another class: an instance.
    """
    try:
        return _convert(value, annotation, key, source)
    except _Mismatch:
        raise ConfigError(f"{source}: {key} must be {describe(annotation)}, got {type(value).__name__} {_show(value)}") from None


def _convert(value: Any, annotation: Any, key: str, source: str) -> Any:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if annotation is Any:
        return value
    if origin in (typing.Union, types.UnionType):  # `float | None` and friends
        if type(None) in args and (value is None or (isinstance(value, str) and value.strip().lower() in ("none", "null", "~"))):
            return None
        for option in (a for a in args if a is not type(None)):
            try:
                return _convert(value, option, key, source)
            except _Mismatch:
                continue
        raise _Mismatch
    if origin is typing.Literal:
        if value in args:
            return value
        raise _Mismatch
    if annotation is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, (int, str)) and str(value).strip().lower() in TRUE_WORDS + FALSE_WORDS:
            return str(value).strip().lower() in TRUE_WORDS
        raise _Mismatch
    if annotation is int:
        return _to_int(value)
    if annotation is float:
        return _to_float(value, key, source)
    if annotation is str:
        if isinstance(value, str):
            return value
        raise _Mismatch
    if origin is tuple or annotation is tuple:
        if isinstance(value, str):
            items: list[Any] = [s.strip() for s in value.split(",") if s.strip()]
        elif isinstance(value, (list, tuple)):
            items = list(value)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            items = [value]
        else:
            raise _Mismatch
        if not args:
            return tuple(items)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(item, args[0], key, source) for item in items)
        if len(items) != len(args):
            raise _Mismatch
        return tuple(_convert(item, arg, key, source) for item, arg in zip(items, args))
    if origin is list or annotation is list:
        if isinstance(value, (list, tuple)):
            items = list(value)
        elif isinstance(value, (str, int, float)):
            items = [value]
        else:
            raise _Mismatch
        return [_convert(item, args[0], key, source) for item in items] if args else items
    if origin is dict or annotation is dict:
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except (json.JSONDecodeError, RecursionError):
                raise _Mismatch from None
        if not isinstance(value, dict):
            raise _Mismatch
        return value
    if isinstance(annotation, type):
        if isinstance(value, annotation):
            return value
        raise _Mismatch
    return value  # an annotation this module cannot check (a Callable, a Protocol, ...): taken as given


def _to_int(value: Any) -> int:
    if isinstance(value, bool):
        raise _Mismatch
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        try:
            return int(text)
        except ValueError:
            pass
        try:
            value = float(text)
        except ValueError:
            raise _Mismatch from None
    if isinstance(value, numbers.Real) and math.isfinite(value) and float(value).is_integer():
        return int(value)
    raise _Mismatch


def _to_float(value: Any, key: str, source: str) -> float:
    if isinstance(value, bool):
        raise _Mismatch
    if isinstance(value, numbers.Integral):
        try:
            return float(value)
        except OverflowError:  # an integer beyond float's range
            try:
                text = str(value)
            except ValueError:  # beyond Python's 4300-digit limit for str(int)
                raise ConfigError(f"{source}: {key} is a {value.bit_length()}-bit integer, beyond a float's range") from None
            raise ConfigError(f"{source}: {key}={text[:20]}... ({len(text)} digits) is beyond a float's range") from None
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, str):
        try:  # YAML 1.1 reads "3e-3" (no dot in the mantissa) as a string
            return float(value)
        except ValueError:
            pass
    raise _Mismatch


def describe(annotation: Any) -> str:
    """What a field of this annotation takes, for error messages: "float (a number, e.g. 3e-4)"."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(describe(a) for a in args if a is not type(None)) + (" or null" if type(None) in args else "")
    if origin is typing.Literal:
        return "one of: " + ", ".join(str(a) for a in args)
    if origin is tuple or annotation is tuple:
        item = args[0] if args else str
        example = {int: "64,64", float: "0.5,0.5"}.get(item, "a,b")
        return f"tuple of {getattr(item, '__name__', item)} (comma-separated, e.g. {example})"
    if origin is list or annotation is list:
        return "list (e.g. [a, b])"
    if origin is dict or annotation is dict:
        return "dict (a mapping, e.g. {key: 1})"
    return {
        bool: "bool (true or false)",
        int: "int (a whole number, e.g. 100_000 or 1e5)",
        float: "float (a number, e.g. 3e-4)",
        str: "str (text; quote a value YAML reads as a number or boolean, e.g. '007' or 'yes')",
    }.get(annotation, getattr(annotation, "__name__", str(annotation)))


def _show(value: Any) -> str:
    """repr(value), cut to 100 characters (and safe for integers beyond Python's 4300-digit str limit)."""
    try:
        text = repr(value)
    except ValueError:
        return f"<{value.bit_length()}-bit integer>" if isinstance(value, int) else "<unprintable value>"
    return text if len(text) <= 100 else text[:97] + "..."
