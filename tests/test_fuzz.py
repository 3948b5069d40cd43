"""Property-based fuzzing (Hypothesis) of everything users feed in: config overrides, dataset rows, answer
extraction and math verification, the environments' action parsers, and the sandbox's result protocol.

Each property states an invariant that a bug breaks (the docstring says which). Runs are reproducible
(derandomize=True, no example database) and small enough for `make test`; tools/fuzz_counts.py runs every
property with a larger budget (REWARDLAB_FUZZ_EXAMPLES) and writes benchmarks/results/fuzz.{md,json},
with the list of bugs these properties found.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import signal
import tempfile
import typing
import warnings
from fractions import Fraction
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from rewardlab.config import (
    METHOD_PRESETS,
    ConfigError,
    GRPOConfig,
    config_to_dict,
    load_config,
    save_config,
)
from rewardlab.data import (
    DataError,
    load_records,
    validate_preference_records,
    validate_prompt_records,
    validate_unpaired_records,
)
from rewardlab.envs import BanditEnv, ContextualBanditEnv, TicTacToeEnv
from rewardlab.rewards import code as sandbox
from rewardlab.rewards.base import RewardError
from rewardlab.rewards.format import format_reward, length_penalty
from rewardlab.rewards.math import extract_answer, math_equal, math_reward
from rewardlab.tasks.arithmetic import arithmetic_reward, parse_problem
from rewardlab.tasks.countdown import (
    MAX_EXPRESSION_CHARS,
    ExpressionError,
    all_solutions,
    countdown_reward,
    is_solution,
    parse_expression,
)

# tools/fuzz_counts.py sets this to run every property with a larger budget
FUZZ_EXAMPLES = int(os.environ.get("REWARDLAB_FUZZ_EXAMPLES", "0") or 0)


def fuzz(examples: int, sandbox_runs: bool = False) -> settings:
    """Reproducible settings: the same examples on every run (derandomize), no database, no deadline.
    Under tools/fuzz_counts.py every property gets at least its budget (real sandbox runs a tenth), and
    failures are shrunk to a minimal example."""
    if FUZZ_EXAMPLES:
        examples = max(examples, FUZZ_EXAMPLES // 10 if sandbox_runs else FUZZ_EXAMPLES)
    return settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
    )


# ------------------------------------------------------------------------------------------ strategies
texts = st.text(max_size=24)
json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=12)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=10,
)
# integers beyond what a float holds (about 1.8e308)
huge_integers = st.one_of(st.integers(min_value=10**308, max_value=10**400), st.integers(min_value=-(10**400), max_value=-(10**308)))
yaml_values = st.recursive(
    st.one_of(
        json_scalars,
        st.floats(),  # NaN and infinities too
        huge_integers,
    ),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)),
    max_leaves=6,
)
# digit runs of any length: action numbers and answers a model may write, up past Python's int-parsing limit
digit_runs = st.one_of(
    st.from_regex(r"-?[0-9]{1,30}", fullmatch=True),
    st.integers(min_value=0, max_value=6000).map(lambda n: "9" * n),
)


def _yaml_text(value) -> str:
    """The YAML a user would write for `value` on the command line (key=<this>)."""
    text = yaml.safe_dump(value, default_flow_style=True, width=float("inf"))  # escapes \x85 etc.
    return text[: -len("\n...\n")] if text.endswith("\n...\n") else text.rstrip("\n")


# ---------------------------------------------------------------------------------------------- config
METHODS = sorted(METHOD_PRESETS)
FIELD_NAMES = sorted({f.name for cls, _ in METHOD_PRESETS.values() for f in dataclasses.fields(cls)})


def _config_or_config_error(method: str, **kwargs) -> None:
    try:
        cfg = load_config(method, **kwargs)
    except ConfigError:
        return
    assert isinstance(cfg, METHOD_PRESETS[method][0]) and cfg.method == method


@fuzz(300)
@given(method=st.sampled_from(METHODS), items=st.lists(
    st.one_of(
        st.builds("{}={}".format, st.one_of(st.sampled_from(FIELD_NAMES), texts), st.one_of(texts, digit_runs)),
        texts,
    ),
    max_size=4,
))
def test_override_strings_give_a_config_or_a_config_error(method, items):
    """Any command-line override list either loads (the method's config class) or raises ConfigError,
    never a raw parser or type error."""
    _config_or_config_error(method, overrides=items)


@st.composite
def typed_overrides(draw):
    """A method and overrides of its own keys with any YAML value (wrong types, NaN, huge integers, nesting)."""
    method = draw(st.sampled_from(METHODS))
    keys = sorted(f.name for f in dataclasses.fields(METHOD_PRESETS[method][0]))
    return method, draw(st.dictionaries(st.sampled_from(keys), yaml_values, min_size=1, max_size=2))


@fuzz(300)
@given(overrides=typed_overrides())
def test_override_values_give_a_config_or_a_config_error(overrides):
    """Overrides of a method's keys with any YAML value load or raise ConfigError."""
    method, values = overrides
    _config_or_config_error(method, overrides=values)


@fuzz(200)
@given(method=st.sampled_from(METHODS), mapping=st.dictionaries(
    st.one_of(st.sampled_from(FIELD_NAMES), texts, st.integers(), st.booleans(), st.none(), st.floats(allow_nan=False)),
    json_scalars, max_size=4,
))
def test_config_files_give_a_config_or_a_config_error(method, mapping):
    """Any YAML mapping in a --config file loads or raises ConfigError."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "config.yaml"
        path.write_text(yaml.safe_dump(mapping, allow_unicode=True))
        _config_or_config_error(method, path=path)


def _value_for(annotation):
    kind = typing.get_origin(annotation) or annotation
    return {
        bool: st.booleans(),
        int: st.integers(min_value=-(10**6), max_value=10**6),
        float: st.floats(allow_nan=False, allow_infinity=False, width=64),
        str: st.text(max_size=16),
        list: st.lists(st.text(max_size=8), max_size=3),
        dict: st.dictionaries(st.text(min_size=1, max_size=8), st.integers(), max_size=3),
    }[kind]


@st.composite
def valid_override(draw):
    method = draw(st.sampled_from(METHODS))
    cls = METHOD_PRESETS[method][0]
    hints = typing.get_type_hints(cls)
    key = draw(st.sampled_from(sorted(f.name for f in dataclasses.fields(cls))))
    return method, key, draw(_value_for(hints[key]))


def _required(method: str, key: str) -> dict:
    """What a method cannot load without (distill: a teacher), unless the override under test sets it."""
    return {"teacher": "teacher_dir"} if method in ("distill", "reopold") and key != "teacher" else {}


@fuzz(180)
@given(override=valid_override())
def test_a_typed_override_round_trips_or_is_refused_by_name(override):
    """key=<value written as YAML> either sets exactly that value, or is refused with a ConfigError that
    names the key (a range or consistency check)."""
    method, key, value = override
    try:
        cfg = load_config(method, overrides=[f"{k}={v}" for k, v in _required(method, key).items()]
                          + [f"{key}={_yaml_text(value)}"])
    except ConfigError as err:
        assert key in str(err), f"the error for {key}={value!r} does not name the key: {err}"
        return
    got = getattr(cfg, key)
    if key == "batch_size" and isinstance(cfg, GRPOConfig):  # the online loop rounds it down to whole groups
        assert got == value - value % cfg.num_generations
    else:
        assert got == value and type(got) is type(value)


@fuzz(50)
@given(override=valid_override())
def test_a_saved_config_loads_back(override):
    """save_config then load_config(method, that file) gives the same config."""
    method, key, value = override
    try:
        cfg = load_config(method, overrides={**_required(method, key), key: value})
    except ConfigError:
        assume(False)
    with tempfile.TemporaryDirectory() as tmp:
        save_config(cfg, Path(tmp) / "config.yaml")
        again = load_config(method, Path(tmp) / "config.yaml")
    assert config_to_dict(again) == config_to_dict(cfg)


# ------------------------------------------------------------------------------------------ data files
@fuzz(180)
@given(suffix=st.sampled_from([".jsonl", ".json"]), content=st.one_of(
    st.binary(max_size=64),
    st.lists(st.one_of(json_values.map(json.dumps), texts), max_size=4).map(lambda lines: "\n".join(lines).encode()),
    st.integers(min_value=1, max_value=5000).map(lambda n: b"[" * n + b"]" * n),  # nested deeper than the parser's stack
    st.builds(lambda head, tail: head + b"\xff\xfe" + tail, st.binary(max_size=8), st.binary(max_size=8)),  # not UTF-8
))
def test_data_files_load_or_raise_data_error_naming_the_file(suffix, content):
    """Any bytes in a .jsonl or .json file give a list of dicts or a DataError that names the file."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"data{suffix}"
        path.write_bytes(content)
        try:
            records = load_records(path)
        except DataError as err:
            assert str(path) in str(err)
            return
    assert isinstance(records, list) and all(isinstance(r, dict) for r in records)


@fuzz(80)
@given(
    records=st.lists(st.dictionaries(st.text(max_size=8), json_values, max_size=4), max_size=5),
    suffix=st.sampled_from([".jsonl", ".json"]),
    bom=st.booleans(), crlf=st.booleans(), blank_lines=st.booleans(), ascii_only=st.booleans(),
)
def test_data_files_written_by_common_tools_load_back_equal(records, suffix, bom, crlf, blank_lines, ascii_only):
    """Records saved as JSON Lines / a JSON array the ways editors and scripts save them (a UTF-8 byte-order
    mark, CRLF line ends, blank lines, escaped or raw non-ASCII) load back equal."""
    if suffix == ".jsonl":
        lines = [json.dumps(r, ensure_ascii=ascii_only) for r in records]
        if blank_lines:
            lines = [part for line in lines for part in (line, "")]
        text = "\n".join(lines) + "\n"
    else:
        text = json.dumps(records, ensure_ascii=ascii_only, indent=1 if blank_lines else None)
    if crlf:
        text = text.replace("\n", "\r\n")
    data = (b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"data{suffix}"
        path.write_bytes(data)
        assert load_records(path) == records


# ------------------------------------------------------------------------------------------ data rows
ROLES = ["system", "user", "assistant", "tool"]


def _messages(roles):
    return st.fixed_dictionaries({"role": roles, "content": st.text(max_size=12)})


openings = st.lists(_messages(st.sampled_from(["system", "user"])), min_size=1, max_size=2)
replies = st.lists(_messages(st.just("assistant")), min_size=1, max_size=2)
any_chat = st.lists(st.one_of(_messages(st.sampled_from(ROLES + ["robot"])), json_values), max_size=3)
field_values = st.one_of(st.text(max_size=12), any_chat, json_values)
ROW_KEYS = ["prompt", "chosen", "rejected", "completion", "label", "answer", "margin"]


@st.composite
def rows(draw):
    """A dataset row: a well-formed one of some kind, often with one field removed or replaced."""
    form = draw(st.sampled_from(["prompt", "pair_text", "pair_chat", "pair_chat_in_replies", "unpaired", "junk"]))
    if form == "prompt":
        row = {"prompt": draw(st.one_of(st.text(min_size=1, max_size=12), openings)),
               "answer": draw(st.one_of(digit_runs, json_values))}
    elif form == "pair_text":
        row = {"prompt": draw(st.text(min_size=1)), "chosen": draw(st.text(min_size=1)),
               "rejected": draw(st.text(min_size=1))}
    elif form == "pair_chat":
        row = {"prompt": draw(openings), "chosen": draw(replies), "rejected": draw(replies)}
    elif form == "pair_chat_in_replies":  # no prompt: chosen and rejected open with the (same?) conversation
        opening = draw(openings)
        other = draw(st.one_of(st.just(opening), openings))
        row = {"chosen": opening + draw(replies), "rejected": other + draw(replies)}
    elif form == "unpaired":
        chat = draw(st.booleans())
        row = {"prompt": draw(openings if chat else st.text(min_size=1)),
               "completion": draw(replies if chat else st.text(min_size=1)), "label": draw(st.booleans())}
    else:
        row = draw(st.dictionaries(st.sampled_from(ROW_KEYS + ["extra"]), field_values, max_size=5))
    if form.startswith("pair") and draw(st.booleans()):
        row["margin"] = draw(st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.integers(), json_values))
    if row and draw(st.integers(0, 3)) == 0:  # break one field
        key = draw(st.sampled_from(sorted(row)))
        if draw(st.booleans()):
            del row[key]
        else:
            row[key] = draw(field_values)
    return row


NAMES_A_ROW = re.compile(r"\brow (\d+) of ")
WHOLE_FILE = re.compile(r"holds \{prompt, completion, label\} rows, which only loss_type kto")  # the file's kind
VALIDATORS = {
    "prompt": lambda records: validate_prompt_records(records, source="rows"),
    "preference": lambda records: validate_preference_records(records, source="rows"),
    "unpaired": lambda records: validate_unpaired_records(records, source="rows"),
}


@fuzz(180)
@given(records=st.lists(rows(), min_size=1, max_size=4), kind=st.sampled_from(sorted(VALIDATORS)))
def test_validation_names_the_first_bad_row(records, kind):
    """A validator passes the rows, or raises DataError naming row k, where row k alone fails and the rows
    before it pass: the error points at the right row."""
    validate = VALIDATORS[kind]
    try:
        validate(records)
    except DataError as err:
        found = NAMES_A_ROW.search(str(err))
        assert found, f"the error names no row: {err}"
        k = int(found.group(1))
        with pytest.raises(DataError):
            validate(records[k : k + 1])
        if k:
            validate(records[:k])


_TOKENIZER = None


def _tokenizer():
    global _TOKENIZER
    if _TOKENIZER is None:
        from rewardlab.models import build_char_tokenizer

        _TOKENIZER = build_char_tokenizer()
    return _TOKENIZER


def _write_jsonl(path: Path, records: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")


@fuzz(100)
@given(records=st.lists(rows(), min_size=1, max_size=4), kto=st.booleans())
def test_preference_rows_are_refused_by_row_or_encoded(records, kto):
    """The DPO/RM/KTO trainers' reading of a dataset file (preference_records, then encode_records): either
    every row becomes token ids, or a DataError names the row at fault."""
    from rewardlab.trainers.preference_inputs import encode_records, preference_records

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "pairs.jsonl"
        _write_jsonl(path, records)
        cfg = SimpleNamespace(dataset=str(path), eval_dataset="", seed=0, eval_seed=0, eval_n=10,
                              task="preference", task_options={})
        try:
            loaded = preference_records(cfg, len(records), unpaired=kto)
            encoded = encode_records(loaded, _tokenizer(), max_length=64, source=str(path))
        except DataError as err:
            assert NAMES_A_ROW.search(str(err)) or WHOLE_FILE.search(str(err)), f"the error names no row: {err}"
            return
    assert len(encoded.prompts) == len(loaded)
    assert all(ids for side in encoded.completions for ids in side)


@fuzz(60)
@given(records=st.lists(rows(), min_size=1, max_size=4))
def test_prompt_rows_are_refused_by_row_or_reach_the_reward(records):
    """The online trainers' reading of a dataset file (train_records, then the pre-flight call of the math
    reward): the rows are used, or a DataError names the row, or a RewardError explains the reward call."""
    from rewardlab.trainers.inputs import preflight_rewards, reward_functions, train_records

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "prompts.jsonl"
        _write_jsonl(path, records)
        cfg = load_config("grpo", overrides={"dataset": str(path)})
        try:
            loaded = train_records(cfg, len(records))
        except DataError as err:
            assert NAMES_A_ROW.search(str(err)), f"the error names no row: {err}"
            return
        try:
            preflight_rewards(reward_functions(cfg), loaded)
        except RewardError:
            pass


# ------------------------------------------------------------------------------- answers: math verify
maths_text = st.text(alphabet=st.sampled_from(list("0123456789-.,/ {}\\boxedfrac$xy=+\n")), max_size=40)


@fuzz(300)
@given(text=st.one_of(texts, maths_text))
def test_extract_answer_is_total_deterministic_and_quotes_the_text(text):
    """extract_answer never raises, gives the same answer twice, and the answer is text from the
    completion (commas of a thousands separator dropped)."""
    answer = extract_answer(text)
    assert extract_answer(text) == answer
    if answer is not None:
        assert answer in text or answer in text.replace(",", "")


@fuzz(180)
@given(text=st.one_of(texts, maths_text), number=st.integers(min_value=-(10**40), max_value=10**40))
def test_the_last_number_or_boxed_answer_is_extracted(text, number):
    """A completion ending in its answer (a number, or \\boxed{...}) has that answer extracted."""
    if "\\boxed" not in text:
        assert extract_answer(f"{text} {number}") == str(number)
    assert extract_answer(f"{text}\\boxed{{{number}}}") == str(number)


def _decimal(n: int, places: int) -> str:
    sign, digits = ("-" if n < 0 else ""), str(abs(n)).rjust(places + 1, "0")
    return f"{sign}{digits[:-places]}.{digits[-places:]}" if places else f"{sign}{digits}"


golds = st.one_of(
    st.integers(min_value=-(10**400), max_value=10**400).map(str),
    st.builds(_decimal, st.integers(min_value=-(10**12), max_value=10**12), st.integers(0, 6)),
    st.builds("{}/{}".format, st.integers(-999, 999), st.integers(1, 999)),
    st.builds("\\frac{{{}}}{{{}}}".format, st.integers(0, 999), st.integers(1, 999)),
)
prose = st.text(alphabet=st.characters(blacklist_categories=("Nd", "Cs"), blacklist_characters="\\{}"), max_size=20)


@fuzz(120)
@given(gold=golds, before=prose, boxed=st.booleans())
def test_math_reward_accepts_the_canonical_answer(gold, before, boxed):
    """A completion that states the gold answer (boxed, or a plain number at the end) earns 1.0."""
    assume(boxed or "frac" not in gold)
    completion = f"{before} \\boxed{{{gold}}}" if boxed else f"{before} {gold}"
    assert math_reward([completion], answer=[gold]) == [1.0]


@fuzz(100)
@given(gold=st.integers(min_value=-(10**400), max_value=10**400), before=prose, data=st.data())
def test_math_reward_rejects_a_different_integer(gold, before, data):
    """A completion whose final answer is another integer (any, or a near miss) earns 0.0, however large
    the numbers."""
    pred = data.draw(st.one_of(st.integers(min_value=-(10**400), max_value=10**400),
                               st.integers(-3, 3).map(lambda delta: gold + delta)))
    assume(gold != pred)
    assert math_reward([f"{before} {pred}"], answer=[str(gold)]) == [0.0]
    assert not math_equal(str(pred), str(gold))


@fuzz(120)
@given(text=prose, gold=golds)
def test_math_reward_rejects_completions_without_an_answer(text, gold):
    """A completion with no number and no \\boxed{} earns 0.0."""
    assert math_reward([text], answer=[gold]) == [0.0]


THINK_ANSWER = format_reward(r"<think>.*?</think>\s*<answer>.*?</answer>")


@fuzz(180)
@given(think=texts, answer=texts, gap=st.text(alphabet=" \n\t", max_size=3), pad=st.text(alphabet=" \n", max_size=2),
       junk=st.one_of(texts, st.lists(st.fixed_dictionaries({"role": st.just("assistant"), "content": texts}),
                                      min_size=1, max_size=2)))
def test_format_reward_accepts_the_format_and_nothing_else(think, answer, gap, pad, junk):
    """The think/answer format reward is 1.0 on any completion in the format (whatever the text inside) and
    0.0 on one that does not start with <think>; it never raises on plain or chat completions."""
    formatted = f"{pad}<think>{think}</think>{gap}<answer>{answer}</answer>{pad}"
    assert THINK_ANSWER(completions=[formatted]) == [1.0]
    values = THINK_ANSWER(completions=[junk])
    text = junk if isinstance(junk, str) else junk[-1]["content"]
    assert values in ([0.0], [1.0]) and (values == [0.0] or text.strip().startswith("<think>"))


@fuzz(120)
@given(max_len=st.integers(1, 64), data=st.data())
def test_length_penalty_is_bounded_and_never_rewards_length(max_len, data):
    """DAPO's overlong penalty lies in [-1, 0] and never rises with the completion length."""
    cache_len = data.draw(st.integers(1, max_len))
    lengths = sorted(data.draw(st.lists(st.integers(0, 2 * max_len), min_size=1, max_size=6)))
    values = length_penalty(max_len, cache_len)(completion_ids=[[0] * n for n in lengths])
    assert all(-1.0 <= v <= 0.0 for v in values)
    assert all(a >= b for a, b in zip(values, values[1:]))


# ---------------------------------------------------------------------------- answers: the built-in tasks
@fuzz(300)
@given(text=st.one_of(texts, st.text(alphabet="0123456789+-*=  \n", max_size=16)))
def test_arithmetic_prompt_parser_raises_only_value_error(text):
    """parse_problem on any text returns (a, op, b) or raises ValueError, and never anything else."""
    try:
        a, op, b = parse_problem(text)
    except ValueError:
        return
    assert op in "+-*" and isinstance(a, int) and isinstance(b, int)


@fuzz(180)
@given(a=st.integers(-(10**30), 10**30), b=st.integers(-(10**30), 10**30), op=st.sampled_from("+-*"),
       chat=st.booleans())
def test_arithmetic_prompts_parse_back(a, b, op, chat):
    """Every prompt the arithmetic task could write, "a op b=", plain or chat, parses back to (a, op, b)."""
    text = f"{a}{op}{b}="
    assert parse_problem([{"role": "user", "content": text}] if chat else text) == (a, op, b)


@fuzz(180)
@given(answer=st.integers(-(10**12), 10**12).map(str), pad=st.text(alphabet=" \t", max_size=3),
       rest=texts, other=texts, chat=st.booleans())
def test_arithmetic_reward_reads_the_first_line_only(answer, pad, rest, other, chat):
    """The arithmetic verifier accepts the answer on the first line (padded, with anything after a newline)
    and rejects any completion whose first line says something else."""
    def score(text):
        completion = [{"role": "assistant", "content": text}] if chat else text
        return arithmetic_reward([completion], answer=[answer])[0]

    assert score(f"{pad}{answer}{pad}\n{rest}") == 1.0
    first = other.strip().split("\n", 1)[0].strip() if other.strip() else ""
    assert score(other) == (1.0 if first == answer else 0.0)


@fuzz(300)
@given(text=st.one_of(st.text(max_size=24), st.text(alphabet="0123456789+-*/() ²³¹٣۷𝟙", max_size=24)),
       numbers=st.lists(st.integers(0, 20), max_size=4), target=st.integers(-50, 50))
def test_countdown_parser_reads_only_arithmetic(text, numbers, target):
    """parse_expression on any text raises only ExpressionError, and what it accepts is ASCII integers,
    + - * /, brackets and spaces, using exactly the integers written; is_solution never raises."""
    try:
        value, used = parse_expression(text)
    except ExpressionError:
        pass
    else:
        assert set(text) - set("0123456789+-*/()") <= {c for c in text if c.isspace()}
        assert used == [int(n) for n in re.findall(r"[0-9]+", text)]
        assert isinstance(value, Fraction)
    assert is_solution(text, numbers, target) in (True, False)


def _trees(depth: int):
    leaf = st.integers(0, 999)
    if depth == 0:
        return leaf
    return st.one_of(leaf, st.tuples(st.sampled_from("+-*/"), _trees(depth - 1), _trees(depth - 1)))


def _exact(tree) -> Fraction | None:
    if isinstance(tree, int):
        return Fraction(tree)
    op, left, right = tree
    a, b = _exact(left), _exact(right)
    if a is None or b is None or (op == "/" and b == 0):
        return None
    return {"+": a + b, "-": a - b, "*": a * b}[op] if op != "/" else a / b


def _leaves(tree) -> list[int]:
    return [tree] if isinstance(tree, int) else _leaves(tree[1]) + _leaves(tree[2])


@st.composite
def rendered(draw, tree):
    """The tree as text, fully bracketed, with random spaces."""
    space = st.text(alphabet=" ", max_size=1)
    if isinstance(tree, int):
        return f"{draw(space)}{tree}{draw(space)}"
    op, left, right = tree
    return f"({draw(rendered(left))}{op}{draw(rendered(right))})"


@fuzz(180)
@given(data=st.data(), tree=_trees(3))
def test_countdown_parser_agrees_with_exact_arithmetic(data, tree):
    """Every bracketed expression of + - * / over integers parses to its exact value and its integers in
    order, or is refused (ExpressionError) exactly when it divides by zero or is too long."""
    text = data.draw(rendered(tree))
    expected = _exact(tree)
    if expected is None or len(text) > MAX_EXPRESSION_CHARS:
        with pytest.raises(ExpressionError):
            parse_expression(text)
        return
    assert parse_expression(text) == (expected, _leaves(tree))


@fuzz(60)
@given(numbers=st.lists(st.integers(1, 9), min_size=2, max_size=3).map(sorted), data=st.data())
def test_countdown_reward_accepts_every_solution(numbers, data):
    """Every correct expression the task knows for a prompt earns 1.0, with spaces and a second line."""
    solutions = all_solutions(tuple(numbers))
    target = data.draw(st.sampled_from(sorted(solutions)))
    expression = data.draw(st.sampled_from(solutions[target]))
    completion = " ".join(expression) + "\n" + data.draw(texts)
    assert countdown_reward([completion], numbers=[numbers], target=[target]) == [1.0]


# ------------------------------------------------------------------------------- environments' actions
ENVS = {
    "tictactoe": lambda: TicTacToeEnv(),
    "tictactoe_second": lambda: TicTacToeEnv(first="opponent", opponent="minimax"),
    "bandit": lambda: BanditEnv(arms=4, horizon=5),
    "contextual_bandit": lambda: ContextualBanditEnv(arms=3, horizon=5, contexts=2),
}
action_texts = st.one_of(
    st.text(max_size=40),
    st.builds("{}move: {}{}".format, texts, digit_runs, texts),
    st.builds("{}<arm>{}</arm>{}".format, texts, digit_runs, texts),
    st.builds("{} {}".format, st.from_regex(r"[a-z]{1,6}", fullmatch=True), digit_runs),  # a rationale alone
)


@fuzz(180)
@given(name=st.sampled_from(sorted(ENVS)), seed=st.integers(0, 1000), turns=st.lists(action_texts, min_size=1, max_size=5))
def test_env_turns_never_raise_on_any_text(name, seed, turns):
    """Whatever the policy writes, step() returns a well-formed transition: the turn is valid exactly when
    the parsed action is legal, and otherwise it is counted as unparseable or illegal."""
    env = ENVS[name]()
    env.reset(seed=seed)
    for text in turns:
        action, legal = env.parse_action(text), env.legal_actions()
        obs, reward, terminated, truncated, info = env.step(text)
        assert isinstance(obs, str) and math.isfinite(reward)
        assert info["action"] == action
        assert info["invalid"] == (None if action in legal else "unparseable" if action is None else "illegal")
        if terminated or truncated:
            break


@fuzz(100)
@given(name=st.sampled_from(sorted(ENVS)), seed=st.integers(0, 1000), data=st.data())
def test_env_accepts_every_legal_move_in_its_canonical_form(name, seed, data):
    """A legal action written in the environment's action form, after any rationale, is parsed as that
    action and played; a `word number` rationale is read back."""
    env = ENVS[name]()
    env.reset(seed=seed)
    for _ in range(5):
        action = data.draw(st.sampled_from(env.legal_actions()))
        word, number = data.draw(st.from_regex(r"[a-z]{1,8}", fullmatch=True)), data.draw(st.integers(-99, 99))
        assert env.parse_rationale(env.format_action(action, f"{word} {number}")) == number
        text = env.format_action(action, data.draw(texts))
        assert env.parse_action(text) == action
        _, _, terminated, truncated, info = env.step(text)
        assert (info["invalid"], info["action"]) == (None, action)
        if terminated or truncated:
            break


# ---------------------------------------------------------------------------- the sandbox result protocol
nonces = st.binary(min_size=16, max_size=16).map(bytes.hex)
hostile_payloads = st.one_of(
    json_values.map(json.dumps),
    st.text(max_size=40),
    st.integers(min_value=1, max_value=5000).map(lambda n: "[" * n + "]" * n),  # nested past the parser's stack
    st.builds(lambda kind, i, v: json.dumps([kind, i, v]), st.sampled_from(["value", "error", "exit", "overflow",
              "syntax_error", "load_error"]), st.one_of(st.integers(-3, 5), json_scalars), json_values),
)


@fuzz(250)
@given(nonce=nonces, n_tests=st.integers(0, 4), timed_out=st.booleans(), returncode=st.one_of(st.none(), st.integers(-70, 300)),
       lines=st.lists(st.one_of(
           st.text(max_size=40),
           st.builds(lambda source, payload: (source, payload), st.sampled_from(["c", "p", "x"]), hostile_payloads),
       ), max_size=6),
       start=st.booleans())
def test_result_parser_never_raises(nonce, n_tests, timed_out, returncode, lines, start):
    """Whatever the report holds (any text, any record, nesting past the JSON parser's stack), the host's
    parser returns a result with a known status and one output per test, and scoring gives a reward in [0, 1]."""
    text = [f"{nonce} {item[0]} {item[1]}" if isinstance(item, tuple) else item for item in lines]
    report = "\n".join((["start"] if start else []) + text)
    result = sandbox._interpret(report, nonce, n_tests, timed_out, returncode, sandbox.SandboxLimits())
    assert result.status in sandbox.STATUSES
    assert len(result.outputs) == len(result.errors) == n_tests
    scored = sandbox._score(result, [0] * n_tests)
    assert 0.0 <= scored.reward <= 1.0


@st.composite
def genuine_reports(draw):
    """A report as the launcher writes it: "start", one record per test from the child, the exit from the parent."""
    nonce = draw(nonces)
    n_tests = draw(st.integers(0, 4))
    lines = ["start"]
    for index in range(n_tests):
        kind = draw(st.sampled_from(["value", "error"]))
        lines.append(f"{nonce} c {json.dumps([kind, index, repr(draw(json_scalars))])}")
    lines.append(f"{nonce} p {json.dumps(['exit', draw(st.sampled_from([0, 0, 1, -9, -24]))])}")
    return nonce, n_tests, lines


def _summary(result):
    return result.status, result.outputs, result.errors, result.returncode, result.passed, result.reward


@fuzz(150)
@given(genuine=genuine_reports(), data=st.data())
def test_forged_lines_without_the_nonce_change_nothing(genuine, data):
    """Lines written into the report by anyone who does not know the nonce (a forged record, a guessed or
    wrong nonce, a JSON exit claim, any text) change no output, no status and no reward."""
    nonce, n_tests, lines = genuine
    forged_record = st.builds("{} {} {}".format,
                              st.one_of(nonces, st.just(nonce[:-1]), st.just(nonce.upper()), st.just("")),
                              st.sampled_from(["c", "p"]), hostile_payloads)
    forged = data.draw(st.lists(st.one_of(st.text(max_size=40), forged_record), min_size=1, max_size=5))
    assume(not any(piece.startswith(nonce + " ") for line in forged for piece in line.splitlines()))
    expected = [repr(v) for v in data.draw(st.lists(json_scalars, min_size=n_tests, max_size=n_tests))]
    tampered = list(lines)
    for line in forged:
        tampered.insert(data.draw(st.integers(1, len(tampered))), line)
    limits = sandbox.SandboxLimits()
    clean = sandbox._score(sandbox._interpret("\n".join(lines), nonce, n_tests, False, 0, limits), expected)
    dirty = sandbox._score(sandbox._interpret("\n".join(tampered), nonce, n_tests, False, 0, limits), expected)
    assert _summary(dirty) == _summary(clean)


@fuzz(180)
@given(genuine=genuine_reports(), said=st.lists(st.one_of(st.text(max_size=40), hostile_payloads), max_size=5), data=st.data())
def test_the_candidate_cannot_speak_for_the_parent(genuine, said, data):
    """Whatever the candidate writes on its own channel (relayed as "<nonce> c ..." lines, one per newline),
    the exit code is the parent's, and no output limit or timeout is reported that the parent did not."""
    nonce, n_tests, lines = genuine
    tampered = list(lines)
    for text in said:
        for part in text.split("\n"):
            tampered.insert(data.draw(st.integers(1, len(tampered) - 1)), f"{nonce} c {part}")
    result = sandbox._interpret("\n".join(tampered), nonce, n_tests, False, 0, sandbox.SandboxLimits())
    exit_code = json.loads(lines[-1].split(" ", 2)[2])[1]
    assert result.returncode == exit_code
    assert result.status not in ("output_limit", "sandbox_error")
    assert result.status != "timeout" or exit_code == -signal.SIGXCPU


literal_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(min_value=-(10**400), max_value=10**400), st.floats(),
              st.sampled_from([math.inf, -math.inf, math.nan]), st.text(max_size=8)),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.tuples(inner, inner),
                            st.dictionaries(st.text(max_size=4), inner, max_size=3)),
    max_leaves=8,
)


def _float_free(value) -> bool:
    if isinstance(value, (list, tuple)):
        return all(map(_float_free, value))
    if isinstance(value, dict):
        return all(map(_float_free, value.values()))
    return not isinstance(value, float)


def _tuples_as_lists(value):
    if isinstance(value, (list, tuple)):
        return [_tuples_as_lists(v) for v in value]
    if isinstance(value, dict):
        return {k: _tuples_as_lists(v) for k, v in value.items()}
    return value


@fuzz(250)
@given(want=literal_values, got=literal_values)
def test_a_reported_value_passes_exactly_when_it_equals_the_expected_one(want, got):
    """The host reads the repr a run reports: the repr of the expected value itself passes (huge integers,
    infinities and NaN included), an integer one off fails, and scoring never raises whatever the run
    returned."""
    assert sandbox._same(sandbox._literal(repr(want)), want)
    if isinstance(want, int) and not isinstance(want, bool):
        assert not sandbox._same(sandbox._literal(repr(want + 1)), want)
    if sandbox._same(sandbox._literal(repr(got)), want) and _float_free(got) and _float_free(want):
        assert _tuples_as_lists(got) == _tuples_as_lists(want)  # no float to round: a pass means equality


@fuzz(180)
@given(code=st.text(max_size=60), before=st.text(max_size=20), after=st.text(max_size=20),
       language=st.sampled_from(["python", "py", "Python3", ""]))
def test_the_last_python_block_is_the_program(code, before, after, language):
    """extract_code never raises, and returns the body of the last python (or unlabelled) fenced block."""
    assume("```" not in before + code + after)
    code = code if code.endswith("\n") or not code else code + "\n"
    text = f"{before}\n```{language}\n{code}```{after}"
    assert sandbox.extract_code(text) == code
    assert isinstance(sandbox.extract_code(before + after), str)


tests_columns = st.one_of(
    st.none(), st.just([]), st.just(""), st.just("[]"), st.just(" [ ] "),
    json_values, json_values.map(json.dumps), st.text(max_size=12),
    st.integers(min_value=1, max_value=5000).map(lambda n: "[" * n + "]" * n),
    st.lists(st.one_of(st.tuples(st.text(max_size=6), json_scalars), json_values), min_size=1, max_size=2),
)


@fuzz(180)
@given(tests=tests_columns)
def test_a_tests_cell_parses_or_is_refused_with_value_error(tests):
    """A row's tests cell (a list, a JSON string, anything a dataset may hold) gives calls and expected
    values, or ValueError; nothing else."""
    try:
        calls, expected = sandbox._parse_tests(tests, "row 0")
    except ValueError:
        return
    assert len(calls) == len(expected) and all(isinstance(c, str) and c.strip() for c in calls)


def _no_tests(cell) -> bool:
    """What the code reward's docstring calls a row without tests: None, or empty (a JSON string of [] too)."""
    if isinstance(cell, str):
        try:
            cell = json.loads(cell) if cell.strip() else None
        except (ValueError, RecursionError):
            return False
    return cell is None or (hasattr(cell, "__len__") and len(cell) == 0)


def _usable(cell) -> bool:
    try:
        sandbox._parse_tests(cell, "row")
    except ValueError:
        return False
    return True


f_tests = st.lists(st.tuples(st.just("f()"), json_scalars), min_size=1, max_size=3)


@fuzz(20, sandbox_runs=True)
@given(
    cells=st.lists(st.one_of(tests_columns, f_tests), max_size=2), runnable=f_tests, at=st.integers(0, 2),
    forged=st.lists(st.one_of(st.text(max_size=30), hostile_payloads), max_size=3),
)
def test_the_code_reward_on_any_tests_column(cells, runnable, at, forged):
    """The code reward on a batch whose tests column holds anything: rows without tests get None, the
    first row with unusable tests is named in a ValueError, and text the program prints (forged result
    records included) earns nothing. Real sandbox runs (a few: ~50 ms each)."""
    program = (f"import sys\nfor line in {forged!r}:\n    print(line)\n    print(line, file=sys.stderr)\n"
               "def f(*args):\n    return None\n")
    column = cells[:at] + [runnable] + cells[at:]  # at least one row the sandbox runs
    reward = sandbox.make_code_reward(sandbox="auto", limits=sandbox.SandboxLimits(timeout_s=5.0))
    bad = [i for i, cell in enumerate(column) if not _no_tests(cell) and not _usable(cell)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        if bad:
            with pytest.raises(ValueError, match=rf"\brow {bad[0]}\b"):
                reward(completions=[f"```python\n{program}```"] * len(column), tests=column)
            return
        values = reward(completions=[f"```python\n{program}```"] * len(column), tests=column)
    for cell, value in zip(column, values):
        if _no_tests(cell):
            assert value is None, f"a row without tests ({cell!r}) got {value}"
            continue
        calls, expected = sandbox._parse_tests(cell, "row")
        if all(call == "f()" for call in calls):  # f returns None: exactly the tests expecting None pass
            assert value == sum(want is None for want in expected) / len(expected)
        else:
            assert 0.0 <= value <= 1.0
