"""Run every Hypothesis property of tests/test_fuzz.py with a larger budget and report what ran.

Each property gets `--examples` examples (real sandbox runs, the one property that starts processes, a
tenth of that); failures are shrunk to a minimal example. The counts are counted here, not taken from the
budget: every call of a property's body is recorded as passed, rejected (an `assume` that did not hold) or
failed. A property marked as a known bug (xfail in the test file) is expected to fail; if it passes, the
bug is no longer found and its mark should go.

    python tools/fuzz_counts.py                   # 2000 examples per property
    python tools/fuzz_counts.py --examples 500 --only sandbox
    python tools/fuzz_counts.py --report-only     # the bug list below edited: rewrite the report, same counts

Writes benchmarks/results/fuzz.json and fuzz.md (the counts, and the list of bugs the properties found,
kept in BUGS below); exits 1 when a property fails that is not a known bug, or a known bug passes.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"

# The bugs these properties found: the property, the minimal input Hypothesis reported, what happened, and
# the fix (file: what changed).
BUGS: list[dict[str, str]] = [
    {
        "property": "test_override_strings_give_a_config_or_a_config_error",
        "input": "method='dapo', items=['advantage=\"'] (also 'advantage=0\\x1f', 'advantage=!0')",
        "symptom": "yaml ScannerError / ReaderError / ConstructorError escaped load_config instead of ConfigError",
        "fix": "rewardlab/config.py: parse_overrides turns yaml.YAMLError into ConfigError",
        "status": "fixed",
    },
    {
        "property": "test_override_strings_give_a_config_or_a_config_error, test_override_values_give_a_config_or_a_config_error",
        "input": "method='dapo', items=['epsilon=' + '9' * 309]; as a dict: ('dapo', {'weight_decay': <a 309-digit int>})",
        "symptom": "OverflowError: int too large to convert to float, from float(value) in config._coerce",
        "fix": "rewardlab/config.py: _coerce turns the OverflowError into a ConfigError naming the key",
        "status": "fixed",
    },
    {
        "property": "test_override_strings_give_a_config_or_a_config_error",
        "input": "method='dapo', items=['advantage=' + '9' * 4301] (found at 2000 examples)",
        "symptom": "ValueError: Exceeds the limit (4300 digits) for integer string conversion, from yaml's int "
                   "constructor; parse_overrides catches only yaml.YAMLError",
        "fix": "rewardlab/config.py: parse_overrides and the config-file read turn that ValueError into a ConfigError",
        "status": "fixed",
    },
    {
        "property": "test_config_files_give_a_config_or_a_config_error",
        "input": "method='dapo', a config file holding the YAML mapping {0: None} (any non-string key: `0:`, `false:`)",
        "symptom": "TypeError: 'int' object is not iterable, from difflib.get_close_matches in config._check_keys",
        "fix": "rewardlab/config.py: _check_keys refuses a non-string key with a ConfigError",
        "status": "fixed",
    },
    {
        "property": "test_a_saved_config_loads_back",
        "input": "override=('dapo', 'advantage', '') (any config)",
        "symptom": "a run's config.yaml written by save_config is refused by load_config: unknown config key 'method'",
        "fix": "rewardlab/config.py: load_config accepts the 'method' key save_config writes, and refuses a config "
               "of another method family",
        "status": "fixed",
    },
    {
        "property": "test_data_files_load_or_raise_data_error_naming_the_file",
        "input": "suffix='.jsonl', content=b'\\x80'",
        "symptom": "UnicodeDecodeError from the text-mode file iteration, not DataError",
        "fix": "rewardlab/data/records.py: files are read as bytes and decoded line by line; DataError names path:line:column",
        "status": "fixed",
    },
    {
        "property": "test_data_files_load_or_raise_data_error_naming_the_file",
        "input": "suffix='.jsonl', content=b'[' * 1987 + b']' * 1987",
        "symptom": "RecursionError from json.loads (nesting past the parser's stack), not DataError",
        "fix": "rewardlab/data/records.py: _parse_json turns RecursionError (and a too-long number's ValueError) into DataError",
        "status": "fixed",
    },
    {
        "property": "test_data_files_written_by_common_tools_load_back_equal",
        "input": "records=[], suffix='.jsonl' (and '.json'), bom=True",
        "symptom": "a valid file saved with a UTF-8 byte-order mark was refused: 'invalid JSON (Unexpected UTF-8 BOM)'",
        "fix": "rewardlab/data/records.py: a leading UTF-8 BOM is skipped",
        "status": "fixed",
    },
    {
        "property": "test_preference_rows_are_refused_by_row_or_encoded",
        "input": "records=[{'chosen': [system '', system '', assistant ''], 'rejected': [system '', assistant '']}]",
        "symptom": "passed validation, then failed in split_conversation with a DataError that names no row",
        "fix": "rewardlab/data/records.py: validate_preference_records checks that a pair without 'prompt' opens "
               "alike in 'chosen' and 'rejected', naming the row",
        "status": "fixed",
    },
    {
        "property": "test_preference_rows_are_refused_by_row_or_encoded",
        "input": "records=[{'chosen': [system '', assistant ''], 'rejected': [system '', system '', assistant '']}] "
                 "(found at 2000 examples)",
        "symptom": "passed validation (the openings agree), so 'rejected''s completion began with a system message; "
                   "the chat template then refused to split it, in a DataError that names no row",
        "fix": "rewardlab/data/records.py: after the shared opening 'rejected' must hold assistant messages only (row "
               "named); rewardlab/trainers/preference_inputs.py: encode_records prefixes a rendering DataError with its row",
        "status": "fixed",
    },
    {
        "property": "test_preference_rows_are_refused_by_row_or_encoded",
        "input": "records=[{'prompt': [system ''], 'chosen': [assistant ''], 'rejected': [assistant ''], 'margin': ''}] "
                 "(and 'margin': [])",
        "symptom": "ValueError / TypeError from float(record['margin']) in encode_records, naming no row",
        "fix": "rewardlab/data/records.py: validate_preference_records requires a finite number (or no) 'margin', naming the row",
        "status": "fixed",
    },
    {
        "property": "test_preference_rows_are_refused_by_row_or_encoded",
        "input": "records=[{'prompt': '0', 'chosen': '0', 'rejected': '0'}, {same, 'margin': 0.0}]",
        "symptom": "DataError 'some rows have a margin and some do not' named no row",
        "fix": "rewardlab/trainers/preference_inputs.py: encode_records names a row without and a row with a margin",
        "status": "fixed",
    },
    {
        "property": "test_math_reward_rejects_a_different_integer",
        "input": "gold=0, pred=<a 400-digit integer>, before=''",
        "symptom": "OverflowError from float(Fraction) in the fallback comparison: math_reward raised mid-training",
        "fix": "rewardlab/rewards/math.py: _fallback_equal compares exactly with Fractions, no float conversion",
        "status": "fixed",
    },
    {
        "property": "test_math_reward_rejects_a_different_integer",
        "input": "gold=999999999, pred=1000000000",
        "symptom": "a wrong answer earned 1.0: the fallback's float rel_tol=1e-9 calls integers 1 apart equal",
        "fix": "rewardlab/rewards/math.py: exact equality, and a tolerance only for a written decimal (below its last digit and 1e-9 relative)",
        "status": "fixed",
    },
    {
        "property": "test_countdown_parser_reads_only_arithmetic",
        "input": "text='¹' (and text='𝟎')",
        "symptom": "'¹': raw ValueError from int() escaped parse_expression and is_solution (a reward crash); "
                   "'𝟎': a non-ASCII digit was accepted as a number",
        "fix": "rewardlab/tasks/countdown.py: the tokenizer takes ASCII digits only (DIGITS), not str.isdigit()",
        "status": "fixed",
    },
    {
        "property": "test_env_turns_never_raise_on_any_text",
        "input": "name='bandit', seed=0, turns=['<arm>' + '9' * 4301 + '</arm>']",
        "symptom": "ValueError: Exceeds the limit (4300 digits) for integer string conversion, from env.step",
        "fix": "rewardlab/envs/base.py: parse_action / parse_rationale read such a number as unparseable (None)",
        "status": "fixed",
    },
    {
        "property": "test_result_parser_never_raises, test_the_candidate_cannot_speak_for_the_parent",
        "input": "a report line '<nonce> c ' + '[' * 1990 + ']' * 1990 (what a hostile program prints on its own channel)",
        "symptom": "RecursionError from json.loads in _interpret: the candidate crashed the host's reward computation",
        "fix": "rewardlab/rewards/code.py: _interpret counts such a line as malformed (catches RecursionError and ValueError)",
        "status": "fixed",
    },
    {
        "property": "test_a_reported_value_passes_exactly_when_it_equals_the_expected_one",
        "input": "want=<a 400-digit integer>, got=None",
        "symptom": "OverflowError from math.isclose in _same: a test expecting (or a program returning) a huge int crashed scoring",
        "fix": "rewardlab/rewards/code.py: _same compares two ints exactly and treats an overflowing int-float comparison as unequal",
        "status": "fixed",
    },
    {
        "property": "test_a_reported_value_passes_exactly_when_it_equals_the_expected_one",
        "input": "want=<a 400-digit integer n>, reported repr(n + 1)",
        "symptom": "a wrong integer passed: ints were compared with rel_tol=1e-9",
        "fix": "rewardlab/rewards/code.py: ints compared exactly (same line as above)",
        "status": "fixed",
    },
    {
        "property": "test_a_reported_value_passes_exactly_when_it_equals_the_expected_one",
        "input": "want=inf (and want=nan)",
        "symptom": "a test expecting inf or nan could never pass: repr 'inf'/'nan' is not a literal, and nan != nan",
        "fix": "rewardlab/rewards/code.py: _literal reads the names inf and nan as floats; _same counts two NaNs as equal",
        "status": "fixed",
    },
    {
        "property": "test_a_tests_cell_parses_or_is_refused_with_value_error",
        "input": "tests='[' * 1990 + ']' * 1990",
        "symptom": "RecursionError from json.loads in _parse_tests, not ValueError",
        "fix": "rewardlab/rewards/code.py: _parse_tests catches RecursionError and ValueError",
        "status": "fixed",
    },
    {
        "property": "test_the_code_reward_on_any_tests_column",
        "input": "cells=[False] / cells=['[]'] / cells=[[None]] (with one runnable row first)",
        "symptom": "False: TypeError from len(); '[]': 0.0 instead of None for a row without tests; [None]: the "
                   "ValueError named 'run_batch item 1', the index among non-empty rows, not the dataset row",
        "fix": "rewardlab/rewards/code.py: make_code_reward finds rows without tests with _no_tests (JSON 'null'/'[]' too) "
               "and checks every other row's tests first, naming its row",
        "status": "fixed",
    },
]


def _failure_text(error: BaseException) -> str:
    """The exception and Hypothesis's falsifying example(s), from the error or its sub-errors."""
    errors = list(getattr(error, "exceptions", [])) or [error]
    parts = []
    for item in errors:
        notes = [n for n in getattr(item, "__notes__", []) if n.strip()]
        head = f"{type(item).__name__}: {str(item).strip().splitlines()[0][:300] if str(item).strip() else ''}"
        parts.append("\n".join([head, *notes]))
    return "\n---\n".join(parts)


def run_property(name: str, test, examples_budget: int) -> dict:
    from hypothesis.errors import UnsatisfiedAssumption

    counts = {"passed": 0, "rejected": 0, "failed": 0}
    inner = test.hypothesis.inner_test

    @functools.wraps(inner)  # Hypothesis names the failing test after this
    def counting(*args, **kwargs):
        try:
            result = inner(*args, **kwargs)
        except UnsatisfiedAssumption:
            counts["rejected"] += 1
            raise
        except BaseException:
            counts["failed"] += 1
            raise
        counts["passed"] += 1
        return result

    test.hypothesis.inner_test = counting
    xfail = next((m for m in getattr(test, "pytestmark", []) if m.name == "xfail"), None)
    started = time.perf_counter()
    failure = ""
    try:
        test()
    except Exception as error:  # a failing property is a result to record
        failure = _failure_text(error)
    finally:
        test.hypothesis.inner_test = inner
    seconds = time.perf_counter() - started
    if xfail is not None:
        outcome = "known bug (fails)" if failure else "KNOWN BUG NOT FOUND"
    else:
        outcome = "FAIL" if failure else "pass"
    return {
        "property": name,
        "max_examples": getattr(getattr(test, "_hypothesis_internal_use_settings", None), "max_examples", None),
        "examples": sum(counts.values()),
        **counts,
        "seconds": round(seconds, 2),
        "outcome": outcome,
        "ok": outcome in ("pass", "known bug (fails)"),
        "known_bug": xfail.kwargs.get("reason", "") if xfail is not None else "",
        "failure": failure,
    }


def markdown(rows: list[dict], examples: int, total_s: float) -> str:
    ok = all(r["ok"] for r in rows)
    lines = [
        f"`python tools/fuzz_counts.py --examples {examples}`: {len(rows)} Hypothesis properties of tests/test_fuzz.py, "
        f"{sum(r['examples'] for r in rows)} examples in {total_s:.1f} s; "
        f"{sum(r['outcome'] == 'pass' for r in rows)} pass, {sum(r['outcome'] == 'known bug (fails)' for r in rows)} "
        f"fail on a known open bug{'' if ok else ' - SOME RESULTS ARE UNEXPECTED'}.",
        "",
        "Examples are counted calls of each property's body (passed + rejected by `assume` + failing, shrinking "
        "included); budget is the `max_examples` it ran with (real sandbox runs get a tenth). "
        f"Python {platform.python_version()}, {platform.machine()}.",
        "",
        "| property | budget | examples | passed | rejected | failing | seconds | outcome |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['property']} | {r['max_examples']} | {r['examples']} | {r['passed']} | {r['rejected']} | "
                     f"{r['failed']} | {r['seconds']} | {r['outcome']} |")
    failing = [r for r in rows if r["failure"]]
    if failing:
        lines += ["", "## Failing properties in this run", ""]
        for r in failing:
            lines += [f"### {r['property']} ({r['outcome']})", ""]
            if r["known_bug"]:
                lines += [f"Known bug: {r['known_bug']}", ""]
            lines += ["```", r["failure"][:3000], "```", ""]
    lines += [
        "",
        "## Bugs found",
        "",
        "Found by these properties (the minimal input is the one Hypothesis reported, some shortened). "
        "An open one keeps its property marked xfail(strict=True) until it is fixed.",
        "",
        "| # | property | minimal failing input | what happened | fix | status |",
        "|---|---|---|---|---|---|",
    ]
    for i, bug in enumerate(BUGS, 1):
        cells = [bug[k].replace("|", "\\|").replace("\n", " ") for k in ("property", "input", "symptom", "fix", "status")]
        lines.append(f"| {i} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=2000, help="examples per property (default 2000)")
    parser.add_argument("--only", default="", help="run the properties whose name contains this")
    parser.add_argument("--no-write", action="store_true", help="print, do not write benchmarks/results/fuzz.*")
    parser.add_argument("--report-only", action="store_true",
                        help="run nothing: rewrite fuzz.md/json from the counts in fuzz.json and the current bug list")
    args = parser.parse_args()
    if args.report_only:
        summary = json.loads((RESULTS / "fuzz.json").read_text())
        summary["bugs"] = BUGS
        (RESULTS / "fuzz.json").write_text(json.dumps(summary, indent=1, ensure_ascii=False) + "\n")
        (RESULTS / "fuzz.md").write_text(markdown(summary["properties"], summary["examples_per_property"], summary["seconds"]))
        return 0

    logging.disable(logging.WARNING)  # e.g. the config's batch-size rounding notice, thousands of times
    os.environ["REWARDLAB_FUZZ_EXAMPLES"] = str(args.examples)  # read by tests/test_fuzz.py at import
    sys.path.insert(0, str(ROOT))
    import tests.test_fuzz as module

    properties = [(name, test) for name, test in vars(module).items()
                  if name.startswith("test_") and hasattr(test, "hypothesis") and args.only in name]
    rows, started = [], time.perf_counter()
    for name, test in properties:
        row = run_property(name, test, args.examples)
        print(f"{row['outcome']:>20}  {row['examples']:>6} examples  {row['seconds']:>7.1f} s  {name}", flush=True)
        rows.append(row)
    total_s = time.perf_counter() - started
    if not args.no_write and not args.only:
        RESULTS.mkdir(parents=True, exist_ok=True)
        summary = {"examples_per_property": args.examples, "seconds": round(total_s, 1), "python": platform.python_version(),
                   "properties": rows, "bugs": BUGS}
        (RESULTS / "fuzz.json").write_text(json.dumps(summary, indent=1, ensure_ascii=False) + "\n")
        (RESULTS / "fuzz.md").write_text(markdown(rows, args.examples, total_s))
        print(f"wrote {RESULTS / 'fuzz.md'} and fuzz.json")
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
