"""Lines per folder and the largest functions of the package, at one or more git revisions.

    python tools/code_stats.py 2b36da8 HEAD        # before and after a refactor

Writes benchmarks/results/code_stats.{md,json}. Lines are physical lines of .py files under rewardlab/;
a function's size is its last line minus its first, decorators excluded, nested functions counted inside
their parent and also on their own. `closures` counts functions defined inside train_grpo.
"""

from __future__ import annotations

import argparse
import ast
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def files_at(rev: str) -> dict[str, str]:
    names = subprocess.run(["git", "ls-tree", "-r", "--name-only", rev, "rewardlab"], cwd=ROOT, check=True,
                           capture_output=True, text=True).stdout.split()
    return {n: subprocess.run(["git", "show", f"{rev}:{n}"], cwd=ROOT, check=True, capture_output=True, text=True).stdout
            for n in names if n.endswith(".py")}


def stats(rev: str) -> dict:
    files = files_at(rev)
    per_folder: Counter = Counter()
    functions = []
    train_grpo = {}
    for name, text in files.items():
        per_folder[str(Path(name).parent)] += len(text.splitlines())
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                size = node.end_lineno - node.lineno + 1
                functions.append({"function": f"{name}:{node.name}", "lines": size})
                if node.name == "train_grpo":
                    inner = [n.name for n in ast.walk(node) if isinstance(n, ast.FunctionDef) and n is not node]
                    train_grpo = {"file": name, "lines": size, "closures": len(inner)}
    functions.sort(key=lambda f: -f["lines"])
    return {"rev": rev, "total_lines": sum(per_folder.values()), "per_folder": dict(sorted(per_folder.items())),
            "largest_functions": functions[:10], "train_grpo": train_grpo}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("revs", nargs="+")
    args = parser.parse_args()
    results = [stats(rev) for rev in args.revs]
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "code_stats.json").write_text(json.dumps(results, indent=2))
    folders = sorted({f for r in results for f in r["per_folder"]})
    lines = ["# Code size (tools/code_stats.py)", "", f"Revisions: {', '.join(r['rev'] for r in results)}", "",
             "| folder | " + " | ".join(r["rev"] for r in results) + " |", "|---|" + "---:|" * len(results)]
    lines += [f"| {f} | " + " | ".join(str(r["per_folder"].get(f, 0)) for r in results) + " |" for f in folders]
    lines += ["| total | " + " | ".join(str(r["total_lines"]) for r in results) + " |", ""]
    lines += ["`train_grpo`: " + "; ".join(f"{r['rev']}: {r['train_grpo'].get('lines')} lines, "
                                           f"{r['train_grpo'].get('closures')} closures" for r in results), ""]
    for r in results:
        lines += [f"Largest functions at {r['rev']}:", ""] + [f"- {f['function']}: {f['lines']}" for f in r["largest_functions"]] + [""]
    (RESULTS / "code_stats.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
