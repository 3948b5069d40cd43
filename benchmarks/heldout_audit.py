"""Audit of the held-out splits: is anything held out ever trained on, and how distinct are the eval sets?

For each task setting it draws a training set the size a run uses (seed 0) and the tune and test eval
sets of the given size for eval seeds 0, 7 and 31337, and counts, with canonical forms computed here
independently of the library (sorted operands for + and *, sorted letters, sorted numbers + target):

    tune/test rows whose canonical form is in the training draw    (must be 0)
    tune/test rows whose canonical form is in the task's train split, listed in full where it can be (0)
    test rows whose canonical form is in a tune set                  (must be 0)
    distinct canonical problems per eval set, and how many of them two eval seeds share

    python benchmarks/heldout_audit.py     # a few seconds; writes results/heldout_audit.json and .md
"""

from __future__ import annotations

import itertools
import json
import logging
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rewardlab.demo import DEMO_SFT, DEMO_TASK  # noqa: E402
from rewardlab.envs.evaluate import MAX_EVAL_SEED, TRAIN_SEED_BASE, eval_seeds  # noqa: E402
from rewardlab.tasks import make_task  # noqa: E402
from rewardlab.tasks.splits import EVAL_SPLITS  # noqa: E402

EVAL_SEEDS = (0, 7, 31337)
OUT = ROOT / "benchmarks" / "results"


def text_of(prompt) -> str:
    return (prompt if isinstance(prompt, str) else prompt[-1]["content"]).strip()


def arithmetic_key(record: dict) -> str:
    text = text_of(record["prompt"]).rstrip("=")
    i = next(i for i, ch in enumerate(text) if ch in "+-*" and i > 0)
    a, op, b = int(text[:i]), text[i], int(text[i + 1 :])
    return f"{min(a, b)}{op}{max(a, b)}" if op in "+*" else f"{a}{op}{b}"


def preference_key(record: dict) -> str:
    return "".join(sorted(text_of(record["prompt"]).rstrip(":")))


def countdown_key(record: dict) -> str:
    numbers, target = text_of(record["prompt"]).rstrip(":").split("=")
    return ",".join(sorted(numbers.split(","), key=int)) + "=" + target


def listed_keys(task, name: str, split: str) -> set[str] | None:
    """The canonical forms of a whole split (independent keys of the listed problems), when it is listed."""
    if name == "preference":
        from rewardlab.tasks.preference import _listed_split

        pool = _listed_split(task.alphabet, task.num_letters, task.tune_fraction, task.heldout_fraction, split)
        return None if pool is None else {"".join(sorted(k)) for k, _ in pool}
    pool = task.split_problems(split)
    if pool is None:
        return None
    if name == "countdown":
        return {",".join(map(str, sorted(numbers))) + f"={target}" for (numbers, target), _ in pool}
    return {f"{min(a, b)}{op}{max(a, b)}" if op in "+*" else f"{a}{op}{b}" for (a, op, b), _ in pool}


SETTINGS = [
    # name, task, options, training rows (a run's draw), eval n, key
    ("arithmetic (demo: 1-2 digits, +)", "arithmetic", DEMO_TASK, DEMO_SFT["max_steps"] * DEMO_SFT["batch_size"], 500, arithmetic_key),
    ("arithmetic (1-3 digits, + - *)", "arithmetic", {"max_digits": 3, "ops": ["+", "-", "*"]}, 64_000, 500, arithmetic_key),
    ("countdown (examples: 3 numbers 1-9)", "countdown", {"sloppy_rate": 0.3}, 800 * 64, 100, countdown_key),
    ("countdown, n=500", "countdown", {"sloppy_rate": 0.3}, 800 * 64, 500, countdown_key),
    ("preference (3 of 26 letters), SFT rows", "preference", {}, 1000 * 64, 500, preference_key),
    ("preference, pairs", "preference", {}, 4000 * 64, 500, preference_key),
]


def audit_task(label: str, name: str, options: dict, n_train: int, n_eval: int, key) -> dict:
    t0 = time.time()
    task = make_task(name, **options)
    pairs = label.endswith("pairs")
    draw = task.preference_pairs if pairs else task.generate
    train = {key(r) for r in draw(n_train, seed=0, split="train")}
    full = {split: listed_keys(task, name, split) for split in ("train", *EVAL_SPLITS)}
    row: dict = {"task": label, "options": options, "train_rows": n_train, "train_distinct": len(train), "eval_n": n_eval,
                 "split_sizes": {s: (len(k) if k is not None else None) for s, k in full.items()}}
    sets: dict[str, dict[int, list[str]]] = {}
    for split in EVAL_SPLITS:
        sets[split] = {seed: [key(r) for r in draw(n_eval, seed=seed, split=split)] for seed in EVAL_SEEDS}
    for split in EVAL_SPLITS:
        rows = [k for seed in EVAL_SEEDS for k in sets[split][seed]]
        row[f"{split}_rows"] = len(rows)
        row[f"{split}_in_train_draw"] = sum(k in train for k in rows)
        row[f"{split}_in_train_split"] = sum(k in full["train"] for k in rows) if full["train"] is not None else None
        row[f"{split}_distinct"] = {seed: len(set(sets[split][seed])) for seed in EVAL_SEEDS}
        row[f"{split}_sizes"] = {seed: len(sets[split][seed]) for seed in EVAL_SEEDS}
        row[f"{split}_seed_overlap"] = {
            f"{a}&{b}": len(set(sets[split][a]) & set(sets[split][b])) for a, b in itertools.combinations(EVAL_SEEDS, 2)
        }
    tune_keys = {k for seed in EVAL_SEEDS for k in sets["tune"][seed]}
    row["test_in_tune_sets"] = sum(k in tune_keys for seed in EVAL_SEEDS for k in sets["test"][seed])
    if all(v is not None for v in full.values()):
        row["listed_splits_disjoint"] = not (full["train"] & full["tune"] or full["train"] & full["test"] or full["tune"] & full["test"])
    row["seconds"] = round(time.time() - t0, 2)
    return row


def env_audit() -> dict:
    test = eval_seeds(MAX_EVAL_SEED - 1, 50_000, "test") + eval_seeds(0, 50_000, "test")
    tune = eval_seeds(MAX_EVAL_SEED - 1, 50_000, "tune") + eval_seeds(0, 50_000, "tune")
    return {
        "test_seeds": "S * 100000 + i, S in [0, 10000), i < 50000",
        "tune_seeds": "S * 100000 + 50000 + i",
        "train_seeds": f">= {TRAIN_SEED_BASE} (10^9 + 10^7 * training seed + i; the SFT demonstrator's from 10^9 + 10^7 * seed + 5 * 10^6)",
        "largest_eval_seed": max(test + tune),
        "eval_below_train": max(test + tune) < TRAIN_SEED_BASE,
        "tune_test_shared_seeds": len(set(test) & set(tune)),
    }


def in_train(r: dict, split: str) -> str:
    full = r[f"{split}_in_train_split"]
    return f"{r[f'{split}_in_train_draw']}" + ("" if full is None else f" (split: {full})")


def distinct(r: dict, split: str) -> str:
    return " / ".join(f"{r[f'{split}_distinct'][s]} of {r[f'{split}_sizes'][s]}" for s in EVAL_SEEDS)


def overlap(r: dict, split: str) -> str:
    return " / ".join(str(v) for v in r[f"{split}_seed_overlap"].values())


def markdown(rows: list[dict], env: dict, seconds: float) -> str:
    seeds = ", ".join(map(str, EVAL_SEEDS))
    lines = [
        "# Held-out audit",
        "",
        f"`python benchmarks/heldout_audit.py` ({seconds:.1f} s). Canonical forms are recomputed by the script: operands",
        "sorted for + and * (not -), prompt letters sorted (preference), numbers sorted + target (countdown).",
        f"Eval sets: seeds {seeds}; a training draw of the size a run uses (seed 0). Split shares: test 20%, tune",
        "10%, train 70% of canonical problems (hash of the canonical form).",
        "",
        "| task | train draw (distinct) | split sizes train/tune/test | eval n | tune rows in train | test rows in train | "
        "test rows in tune sets | distinct per test set | test overlap between seeds | distinct per tune set | tune overlap |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        sizes = "/".join("-" if r["split_sizes"][s] is None else str(r["split_sizes"][s]) for s in ("train", "tune", "test"))

        lines.append(
            f"| {r['task']} | {r['train_rows']} ({r['train_distinct']}) | {sizes} | {r['eval_n']} | {in_train(r, 'tune')} | "
            f"{in_train(r, 'test')} | {r['test_in_tune_sets']} | {distinct(r, 'test')} | {overlap(r, 'test')} | {distinct(r, 'tune')} | "
            f"{overlap(r, 'tune')} |"
        )
    lines += [
        "",
        f"Overlap columns: shared distinct problems between eval seeds {EVAL_SEEDS[0]}&{EVAL_SEEDS[1]} / "
        f"{EVAL_SEEDS[0]}&{EVAL_SEEDS[2]} / {EVAL_SEEDS[1]}&{EVAL_SEEDS[2]}. '(split: k)': rows whose canonical form is",
        "anywhere in the listed train split, not just the draw ('-' where the split is too large to list).",
        "An eval set asked for more problems than its split holds gets all of them (with a warning): its size is then",
        "the split's size and two seeds share every problem, in another order.",
        "",
        "Text environments: episodes are picked by seed. "
        f"Test episodes use seeds {env['test_seeds']}; tune episodes {env['tune_seeds']}; training episodes "
        f"{env['train_seeds']}. Largest evaluation seed {env['largest_eval_seed']} (below training: {env['eval_below_train']}); "
        f"seeds shared by tune and test: {env['tune_test_shared_seeds']}. A seed fixes the episode's randomness (a "
        "bandit's arm means, a tic-tac-toe opponent's choices); it does not keep game positions apart, so the same "
        "tic-tac-toe board occurs in training and evaluation episodes.",
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    logging.basicConfig(level=logging.ERROR)  # the "split holds only k problems" warnings are in the table
    t0 = time.time()
    rows = [audit_task(*setting) for setting in SETTINGS]
    env = env_audit()
    seconds = time.time() - t0
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "heldout_audit.json").write_text(json.dumps({"eval_seeds": EVAL_SEEDS, "tasks": rows, "envs": env,
                                                        "seconds": round(seconds, 1)}, indent=2) + "\n")
    (OUT / "heldout_audit.md").write_text(markdown(rows, env, seconds))
    print((OUT / "heldout_audit.md").read_text())
    leaks = [r["task"] for r in rows if r["tune_in_train_draw"] or r["test_in_train_draw"] or r["test_in_tune_sets"]
             or r.get("tune_in_train_split") or r.get("test_in_train_split") or r.get("listed_splits_disjoint") is False]
    if leaks:
        print(f"LEAKS: {leaks}")
    return 1 if leaks else 0


if __name__ == "__main__":
    sys.exit(main())
