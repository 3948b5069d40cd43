"""`make mutate`: break the library on purpose, one known way at a time, and check the fast suite notices.

Each mutation in tools/mutations.py replaces one exact snippet of one file (it must occur exactly once, so
a mutation that no longer applies fails loudly instead of silently testing nothing). For each, the runner
copies the package and the tests to a scratch folder, applies the change, runs the mutation's tests (the
files or single tests written for that behaviour) with pytest and records which failed. A mutation is
caught when at least one test fails; the tests run are part of the fast suite (`--full` runs the whole
fast suite for each mutation instead), so a caught mutation is caught by `make test` too.

    python tools/mutate.py                 # every mutation, 2 at a time
    python tools/mutate.py --only online   # names containing "online"
    python tools/mutate.py --list

Writes benchmarks/results/mutate.json and mutate.md; exits 1 when any mutation survives.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
from mutations import MUTATIONS, Mutation  # noqa: E402

COPIED = ("rewardlab", "tests", "benchmarks", "docs", "pyproject.toml")  # tests read benchmarks/ (results) and docs/ (the worked examples)
FAILED_LINE = re.compile(r"^(?:FAILED|ERROR) (\S+)", re.M)


def scratch_copy(destination: Path) -> None:
    for name in COPIED:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, destination / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(source, destination / name)


def mutated(mutation: Mutation, tree: Path) -> str:
    """The text of the mutation's file under tree with the change applied."""
    text = (tree / mutation.path).read_text()
    found = text.count(mutation.old)
    if found != 1:
        raise SystemExit(
            f"mutation {mutation.name!r}: the snippet occurs {found} times in {mutation.path} (need exactly 1). "
            "The code moved: update tools/mutations.py so the mutation breaks what it names."
        )
    return text.replace(mutation.old, mutation.new)


def pytest_command(tests: list[str], full: bool) -> list[str]:
    selection = ["tests"] if full else tests
    return [sys.executable, "-m", "pytest", "-q", "-m", "not slow and not gpu", "-p", "no:cacheprovider",
            "-rfE", *selection]


def run_tests(tree: Path, tests: list[str], full: bool) -> tuple[int, list[str], str]:
    env = {**os.environ, "PYTHONPATH": str(tree), "PYTHONDONTWRITEBYTECODE": "1"}
    proc = subprocess.run(pytest_command(tests, full), cwd=tree, env=env, capture_output=True, text=True)
    output = proc.stdout + proc.stderr
    return proc.returncode, sorted(set(FAILED_LINE.findall(output))), output


def imports_from(tree: Path) -> str:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    code = "import rewardlab; print(rewardlab.__file__)"
    return subprocess.run([sys.executable, "-c", code], cwd=tree, env=env, capture_output=True, text=True, check=True).stdout.strip()


def check_one(mutation: Mutation | None, tests: list[str], full: bool) -> dict:
    with tempfile.TemporaryDirectory(prefix="rewardlab-mutant-") as scratch:
        tree = Path(scratch)
        scratch_copy(tree)
        where = imports_from(tree)
        if not where.startswith(scratch):  # the editable install must not shadow the mutated copy
            raise SystemExit(f"the scratch copy imports rewardlab from {where}, not from {scratch}")
        if mutation is not None:
            (tree / mutation.path).write_text(mutated(mutation, tree))
        t0 = time.time()
        code, failed, output = run_tests(tree, tests, full)
    return {"code": code, "failed": failed, "seconds": round(time.time() - t0, 1), "output": output}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default="", help="run the mutations whose name contains this text")
    parser.add_argument("--jobs", type=int, default=2, help="mutations tested at once (default 2)")
    parser.add_argument("--full", action="store_true", help="run the whole fast suite for each mutation")
    parser.add_argument("--list", action="store_true", help="list the mutations and exit")
    parser.add_argument("--out", default="", help="where mutate.json/.md go (default benchmarks/results/; none with --only)")
    args = parser.parse_args(argv)

    chosen = [m for m in MUTATIONS if args.only in m.name]
    if args.list:
        for m in chosen:
            print(f"{m.name}\n    {m.path}: {m.why}")
        return 0
    if not chosen:
        raise SystemExit(f"no mutation name contains {args.only!r}; see --list")
    for m in chosen:  # every snippet applies before anything runs
        mutated(m, ROOT)

    # the unmutated code must pass the same tests, or a "caught" mutation means nothing
    tests = sorted({t for m in chosen for t in m.tests})
    print(f"clean run of the {len(tests)} test selections ...", flush=True)
    clean = check_one(None, tests, args.full)
    if clean["code"] != 0:
        print(clean["output"][-4000:])
        raise SystemExit(f"the unmutated code fails these tests: {clean['failed']}; fix them before mutating")
    print(f"  passed in {clean['seconds']} s", flush=True)

    def job(m: Mutation) -> dict:
        result = check_one(m, m.tests, args.full)
        caught = result["code"] != 0
        status = "caught" if caught else "SURVIVED"
        print(f"{status:8s} {m.name} ({result['seconds']} s): {', '.join(result['failed']) or '-'}", flush=True)
        if caught and not result["failed"]:  # a crash in collection still counts, but say so
            result["failed"] = [f"pytest exit {result['code']}: {result['output'].strip().splitlines()[-1]}"]
        return {"name": m.name, "path": m.path, "why": m.why, "caught": caught, "caught_by": result["failed"],
                "tests_run": ["tests"] if args.full else m.tests, "seconds": result["seconds"]}

    t0 = time.time()
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        rows = list(pool.map(job, chosen))
    survivors = [r["name"] for r in rows if not r["caught"]]
    summary = {"mutations": len(rows), "caught": len(rows) - len(survivors), "survived": survivors,
               "full_suite": args.full, "wall_s": round(time.time() - t0, 1), "rows": rows}
    if args.out or not args.only:  # a partial run does not overwrite the full record unless asked to
        write_results(Path(args.out or ROOT / "benchmarks" / "results"), summary, rows, args.full)
    print(f"\n{summary['caught']} of {len(rows)} caught" + (f"; survived: {', '.join(survivors)}" if survivors else ""))
    return 1 if survivors else 0


def write_results(out: Path, summary: dict, rows: list[dict], full: bool) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "mutate.json").write_text(json.dumps(summary, indent=2) + "\n")
    lines = ["| mutation | file | caught | caught by |", "|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['name']} | {r['path']} | {'yes' if r['caught'] else '**no**'} | {'<br>'.join(r['caught_by']) or '-'} |")
    header = (f"`python tools/mutate.py{' --full' if full else ''}`: {summary['caught']} of {summary['mutations']} mutations "
              f"caught, {summary['wall_s']} s.\n\n")
    (out / "mutate.md").write_text(header + "\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main())
